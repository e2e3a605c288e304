"""Shared fixtures: offline settings, a tiny model, small data files."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Piped output is tested at its own width (cli.render): a terminal's COLUMNS / LINES must not reach the CLI's children.
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)
if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs one worker per core: one thread each (and children)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
# One TUNEFORGE_HOME for the session (the builtin-model cache lives there); TUNEFORGE_TEST_HOME reuses one.
os.environ["TUNEFORGE_HOME"] = os.environ.get("TUNEFORGE_TEST_HOME") or tempfile.mkdtemp(prefix="tuneforge-test-")
sys.path.insert(0, str(Path(__file__).parent))

from fixtures.data import MEMORIZE, write_jsonl  # noqa: E402
from fixtures.tiny import build_tiny_llama  # noqa: E402


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Under `pytest -n N --dist loadgroup`: a file's tests stay on one worker (its module fixtures are built
    once), and every test of the shared quickstart run goes to the same worker (it is built once).

    First of the hooks: xdist's worker plugin, registered after this file and so called before it otherwise, turns
    the marks into the ``@group`` suffix of each node id, which its scheduler groups by. It found no mark, and a
    file's tests were spread over both workers (module fixtures built twice, the quickstart too, and a test that
    reads what the one before it made failed). pyproject.toml keeps pytest below 9.2, where xdist's suffix is lost.
    tests/unit/test_test_groups.py checks the split."""
    for item in items:
        group = "quickstart" if "quickstart_result" in item.fixturenames else item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def settings():
    """The session's Settings, read once from the environment above (TUNEFORGE_HOME is the test home)."""
    from tuneforge.settings import Settings

    return Settings.from_env()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random Llama model directory (2 layers, hidden 64) with a BPE tokenizer."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def memorize_data(tmp_path) -> Path:
    """A small memorizable chat set in JSONL."""
    return write_jsonl(tmp_path / "train.jsonl", MEMORIZE)


@pytest.fixture(scope="session")
def quickstart_result(tmp_path_factory, settings):
    """The quickstart (base SmolLM2-135M measured, LoRA-tuned, measured again), run once per session."""
    from tuneforge.services.quickstart import run_quickstart

    return run_quickstart(workdir=tmp_path_factory.mktemp("qs"), settings=settings)


@pytest.fixture(scope="session")
def postgres_url():
    """The URL of a throwaway PostgreSQL cluster for the session (skipped where PostgreSQL is not installed)."""
    from fixtures.postgres import postgres_bin, postgres_cluster

    if postgres_bin() is None:
        pytest.skip("PostgreSQL is not installed (apt-get install -y postgresql)")
    with postgres_cluster() as url:
        yield url
