"""llama.cpp's log goes to the ``tuneforge.serving`` logger: errors (and their continuation lines) only."""

from __future__ import annotations

import logging

import pytest


def test_llama_log_keeps_errors_and_drops_warnings(caplog):
    pytest.importorskip("llama_cpp")
    from tuneforge.serving.llamacpp_batch import route_llama_log

    callback = route_llama_log()
    assert route_llama_log() is callback  # set once per process
    with caplog.at_level(logging.DEBUG, logger="tuneforge.serving"):
        callback(3, b"lora for 'blk.0.attn_q.weight' cannot use buft 'AMX', fallback to CPU\n", None)
        callback(5, b"... continued warning\n", None)
        callback(4, b"failed to load model\n", None)
        callback(5, b"... continued error\n", None)
        callback(2, b"info line\n", None)
    assert [r.getMessage() for r in caplog.records] == ["llama.cpp: failed to load model",
                                                      "llama.cpp: ... continued error"]
