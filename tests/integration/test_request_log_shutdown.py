"""The request log of a real ``tuneforge serve --log-requests`` loses nothing on SIGTERM: every request answered
before (or while) the server stops is in the log, with its text; on kill -9 the loss is bounded by the writer's
delay (see services/traffic.RequestLog)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import openai

from fixtures.platform import temp_platform, wait_for
from fixtures.postgres import free_port

SRC = os.path.join(os.path.dirname(__file__), "..", "..", "src")


def start_serve(home, model, port: int, log) -> subprocess.Popen:
    command = [sys.executable, "-m", "tuneforge.cli.app", "serve", f"tiny={model}", "--port", str(port),
               "--log-requests", "--home", str(home), "--threads", "1", "--max-batch", "4"]
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("TUNEFORGE_DATABASE_URL", None)
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)


def logged(home) -> dict[str, object]:
    with temp_platform(home) as platform:
        return {r.id: r for r in platform.store.list_served_requests(project="acme")}


def test_every_answered_request_is_in_the_log_after_a_sigterm(tiny_model, tmp_path):
    from tuneforge.services.platform import create_api_key

    home = tmp_path / "home"
    with temp_platform(home) as platform:
        key = create_api_key(platform, project="acme")
    port = free_port()
    with (tmp_path / "serve.log").open("w") as log:
        server = start_serve(home, tiny_model, port, log)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0, timeout=60)
    answered: list[tuple[str, str]] = []
    stop = threading.Event()

    def ask(n: int) -> None:
        while not stop.is_set():
            try:
                reply = client.chat.completions.create(model="tiny", max_tokens=4, temperature=0,
                                                       messages=[{"role": "user", "content": f"count {n}"}])
            except openai.APIError:
                return  # the server stopped (refused or cut): only answered requests count
            answered.append((reply.id, reply.choices[0].message.content))

    try:
        wait_for(lambda: _ready(client), timeout=120, every=0.3, what="the server to answer")
        threads = [threading.Thread(target=ask, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        wait_for(lambda: len(answered) >= 30, timeout=120, every=0.05, what="30 answers")
        server.send_signal(signal.SIGTERM)  # requests are in flight: the server finishes them, then stops
        # uvicorn re-raises the signal once it shut down cleanly: the shell sees a SIGTERM exit
        assert server.wait(timeout=60) in (0, -signal.SIGTERM), (tmp_path / "serve.log").read_text()[-3000:]
    finally:
        stop.set()
        server.kill()
    for thread in threads:
        thread.join(timeout=60)
    log = logged(home)
    missing = [rid for rid, _ in answered if rid not in log]
    assert not missing, f"{len(missing)} of {len(answered)} answered requests are not in the log"
    assert all(log[rid].answer == text for rid, text in answered)  # --log-requests: the text is kept
    assert all(log[rid].prompt["messages"][0]["content"].startswith("count ") for rid, _ in answered)


def _ready(client) -> bool:
    try:
        client.models.list()
        return True
    except openai.APIError:
        return False


def test_a_write_the_database_refuses_is_retried_not_dropped(tmp_path):
    import sqlite3

    from tuneforge.services.traffic import RequestLog
    from tuneforge.storage.records import ServedRequestRecord

    def record(n: int) -> ServedRequestRecord:
        return ServedRequestRecord(id=f"chatcmpl-{n}", project="acme", model="tiny", variant="tiny")

    home = tmp_path / "home"
    with temp_platform(home) as platform:
        database = sqlite3.connect(home / "tuneforge.db")
        writer = RequestLog(platform.store, retry_seconds=0.05)
        writer(record(0))
        writer.flush()
        database.execute("ALTER TABLE served_requests RENAME TO served_requests_away")  # the log's table is gone
        database.commit()
        for n in range(1, 40):
            writer(record(n))
        time.sleep(0.5)  # the writer is refused (and waits) meanwhile
        database.execute("ALTER TABLE served_requests_away RENAME TO served_requests")
        database.commit()
        database.close()
        writer.flush()
        assert [r.id for r in platform.store.list_served_requests(project="acme")] == \
            [f"chatcmpl-{n}" for n in range(40)]  # every request, in order, none twice
        for n in range(40, 600):
            writer(record(n))
        writer.close()  # what is queued is written before close returns
        assert len(platform.store.list_served_requests(project="acme")) == 600
