"""The real `tuneforge train` in a subprocess: Ctrl-C / SIGTERM save a checkpoint, piped output logs steps."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time

import pytest
from test_cli import CLI, tuneforge, write_config

LONG_RUN = {"train": {"max_steps": 400, "batch_size": 2, "logging_steps": 1, "save_steps": 1000}}


def interrupt_after_first_step(config, signum: int) -> tuple[int, str, str]:
    """Start `train CONFIG`, send ``signum`` once the first step's line is printed; return (code, out, err)."""
    process = subprocess.Popen([*CLI, "train", str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    lines, deadline = [], time.monotonic() + 300
    while not any(line.startswith("step ") for line in lines):
        line = process.stdout.readline()
        assert line and time.monotonic() < deadline, "no step line before the run ended:\n" + "".join(lines)
        lines.append(line)
    process.send_signal(signum)
    out, err = process.communicate(timeout=300)
    return process.returncode, "".join(lines) + out, err


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_checkpoints_the_step_and_resume_finishes(tiny_model, memorize_data, tmp_path, signum, code):
    config = write_config(tmp_path / "c.yaml", tiny_model, memorize_data, tmp_path / "run", **LONG_RUN)
    returncode, out, err = interrupt_after_first_step(config, signum)

    assert returncode == code, err
    match = re.search(r"interrupted at step (\d+); continue with --resume", err)
    assert match, err
    step = int(match.group(1))
    assert 0 < step < 400 and "Traceback" not in err
    assert (tmp_path / "run" / "checkpoints" / f"checkpoint-{step}" / "trainer_state.json").is_file()
    assert not (tmp_path / "run" / "summary.json").exists()
    if signum == signal.SIGTERM:
        return  # resuming is the same for both signals: check it once

    resumed = tuneforge("train", config, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from checkpoint-{step}" in resumed.stdout
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["global_step"] == 400 and summary["resumed_from"] == f"checkpoint-{step}"


def test_piped_output_logs_each_logged_step(tiny_model, memorize_data, tmp_path):
    config = write_config(tmp_path / "c.yaml", tiny_model, memorize_data, tmp_path / "run",
                          train={"max_steps": 6, "logging_steps": 2})
    result = tuneforge("train", config)  # stdout is a pipe, not a terminal

    assert result.returncode == 0, result.stderr
    for step in (2, 4, 6):
        assert re.search(rf"^step {step}/6  loss \d+\.\d{{4}}  lr \S+  \d+ tok/s", result.stdout, re.M), result.stdout
    assert re.search(r"^step 2/6 .* eta \d+:\d\d:\d\d$", result.stdout, re.M), result.stdout
    assert "only 8 training example(s)" in result.stdout and "fewer than 10" in result.stdout
