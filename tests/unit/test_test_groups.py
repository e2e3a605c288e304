"""The test command's split over pytest-xdist workers (`pytest -n 2 --dist loadgroup`, README): every test of a file
runs on one worker, so a module fixture is built once and a test may read what the one before it made."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FILES = ["tests/unit/test_hpo_space.py", "tests/unit/test_cli_hpo.py"]  # quick ones, of several tests each


def test_each_file_runs_on_one_worker():
    run = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-v", "-p",
                          "no:cacheprovider", *FILES], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:]
    workers: dict[str, set[str]] = defaultdict(set)
    for worker, file in re.findall(r"^\[(gw\d+)\] .*? PASSED (tests/[^:]+)::", run.stdout, flags=re.M):
        workers[file].add(worker)
    assert set(workers) == set(FILES), run.stdout[-3000:]
    assert all(len(found) == 1 for found in workers.values()), dict(workers)
