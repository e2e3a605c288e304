"""One Settings object: read from the environment in one function, and the CLI's defaults are its defaults."""

from __future__ import annotations

import inspect

import pytest

from tuneforge.settings import Settings


def test_from_env_reads_the_three_variables_and_flags_win(tmp_path):
    environ = {"TUNEFORGE_HOME": str(tmp_path), "TUNEFORGE_BASE_MODELS": "tiny=/m/tiny, big=/m/big"}
    settings = Settings.from_env(environ)
    assert settings.home == str(tmp_path) and settings.database_url == f"sqlite:///{tmp_path / 'tuneforge.db'}"
    assert settings.base_models == {"tiny": "/m/tiny", "big": "/m/big"}
    assert settings.model_cache_dir == tmp_path / "models" and settings.run_dir("ftjob-1").parent.name == "ftjob-1"
    flagged = Settings.from_env({**environ, "TUNEFORGE_DATABASE_URL": "sqlite:///env.db"},
                                database_url="sqlite:///flag.db", concurrency=None)
    assert flagged.database_url == "sqlite:///flag.db" and flagged.concurrency == Settings().concurrency


@pytest.mark.parametrize("command", ["server", "worker"])
def test_cli_defaults_are_the_settings_defaults(command):
    from tuneforge.cli import platform

    flags = {"concurrency": "concurrency", "stale_after": "stale_after_seconds",
             "threads_per_job": "threads_per_job", "max_upload_mb": "max_upload_bytes"}
    parameters = inspect.signature(getattr(platform, command)).parameters
    checked = 0
    for flag, field in flags.items():
        if flag not in parameters:
            continue
        default = parameters[flag].default.default  # typer.Option(...)'s default
        if field == "max_upload_bytes":
            default = int(default * 2**20)
        assert default == Settings.model_fields[field].default, f"--{flag.replace('_', '-')} of {command}"
        checked += 1
    assert checked >= 3


def test_quiet_library_logs_keeps_the_offline_kernel_notes_out_and_lets_errors_through(caplog):
    import logging

    from tuneforge.settings import NOISY_LOGGERS, quiet_library_logs

    before = {name: logging.getLogger(name).level for name in NOISY_LOGGERS}
    try:
        quiet_library_logs()
        with caplog.at_level(logging.NOTSET):
            # what kernels logs when bitsandbytes asks for its CPU kernel offline (an AVX512-BF16 CPU)
            logging.getLogger("kernels._internals.hf_hub").warning("Skipping publisher trust check")
            logging.getLogger("bitsandbytes.backends.cpu.ops").error("a real failure")
        assert [r.getMessage() for r in caplog.records] == ["a real failure"]
    finally:
        for name, level in before.items():
            logging.getLogger(name).setLevel(level)
