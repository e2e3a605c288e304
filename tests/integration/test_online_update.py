"""Incremental updates on a tiny model: the CLI loop registers N+1 with lineage and the replay share, the update
starts from the live adapter, the gate blocks a worse update (never served), and an update goes live on a real
server under load from 8 openai clients with no failed request, then rolls back; a serve_update job through the
native API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import httpx2 as httpx
import openai
import pytest
import yaml

from fixtures.data import write_jsonl
from fixtures.platform import running_server, wait_for
from tuneforge.settings import Settings
from tuneforge.storage.rundir import RunDir

CLI = [sys.executable, "-m", "tuneforge.cli.app"]
SRC = os.path.join(os.path.dirname(__file__), "..", "..", "src")
PAIRS = [(1, 2), (3, 4), (2, 5), (6, 1), (4, 4), (7, 2), (5, 3), (8, 1)]
NAMES = ["Maria", "Lopez", "Lisbon", "teacher", "quick", "brown", "jumps", "lazy"]
GREEDY = {"temperature": 0, "max_tokens": 4}


def chat(question: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


OLD = [chat(f"What is {a} plus {b}?", str(a + b)) for a, b in PAIRS]
NEW = [chat(f"name={n}", n[:3]) for n in NAMES]
PREFS = [{"prompt": [{"role": "user", "content": f"name={n}"}], "chosen": [{"role": "assistant", "content": n[:3]}],
          "rejected": [{"role": "assistant", "content": n[-3:]}]} for n in NAMES]
WRONG = [chat(f"What is {a} plus {b}?", str((a + b + 3) % 10)) for a, b in PAIRS]  # wrong labels of old inputs


@pytest.fixture(scope="module")
def loop(tmp_path_factory, tiny_model):
    """A home with data set ``facts`` (1: sums, 2: + names, 3: + wrong sums), model ``adder`` (1: a LoRA trained on
    the sums, production) and the gate's suite (old and new inputs)."""
    from tuneforge.services.datasets import append_data, import_data
    from tuneforge.services.platform import open_platform
    from tuneforge.services.registry import register, set_alias
    from tuneforge.services.training import train

    root = tmp_path_factory.mktemp("online")
    settings = Settings(home=str(root / "home"), concurrency=1, poll_seconds=0.2, heartbeat_seconds=0.3,
                        threads_per_job=1, allow_local_paths=True)
    files = {k: write_jsonl(root / f"{k}.jsonl", rows) for k, rows in (("old", OLD), ("new", NEW), ("wrong", WRONG))}
    platform = open_platform(settings)
    import_data(platform, files["old"], project="default", name="facts")
    append_data(platform, "facts", files["new"], project="default")
    append_data(platform, "facts", files["wrong"], project="default")
    import_data(platform, write_jsonl(root / "prefs1.jsonl", PREFS[:4]), project="default", name="prefs")
    append_data(platform, "prefs", write_jsonl(root / "prefs2.jsonl", PREFS[4:]), project="default")
    config = {"model": str(tiny_model), "method": {"name": "lora", "r": 8, "alpha": 16, "dropout": 0.0},
              "data": {"train": str(files["old"])}, "output_dir": str(root / "parent"),
              "train": {"max_steps": 60, "learning_rate": 0.01, "batch_size": 8, "warmup": 0, "save_steps": 1000,
                        "precision": "fp32"}}
    train(config, settings=settings)
    for name in ("adder", "swap", "cli"):
        set_alias(platform, name, register(platform, root / "parent", project="default", name=name,
                                           created_by="test").version, "production", project="default", actor="test")
    suite = {"tasks": [{"name": t, "data": str(files[t]), "metrics": ["exact_match"], "max_new_tokens": 4}
                       for t in ("old", "new")], "latency_samples": 0}
    (root / "suite.yaml").write_text(yaml.safe_dump(suite))
    yield {"root": root, "settings": settings, "platform": platform, "suite": suite}
    platform.close()


def update(loop, name: str, *, since: int, dataset: str = "facts", **options):
    from tuneforge.services.online import UpdateRequest, update_model

    request = UpdateRequest.model_validate({"name": name, "dataset": dataset, "since": since, "suite": loop["suite"],
                                            **options})
    return update_model(loop["platform"], request, project="default", actor="test",
                        run_dir=loop["root"] / f"run-{name}-{time.monotonic_ns()}")


def test_cli_update_loop_registers_the_next_version_with_lineage_and_replay(loop):
    env = {**os.environ, "TUNEFORGE_HOME": loop["settings"].home, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    env.pop("TUNEFORGE_DATABASE_URL", None)
    # 8 old inputs: exact match moves in steps of 0.125; this update may lose one or two of them (the batch order
    # decides), which 0.3 allows. The gate's blocking side is the wrong-label update of the next test (drop >= 0.5).
    done = subprocess.run([*CLI, "update", "cli", "--data", "facts:2", "--since", "1", "--replay", "0.5",
                           "--suite", loop["root"] / "suite.yaml", "--max-drop", "exact_match=0.3", "--every", "1s",
                           "--cycles", "2", "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    first, second = [json.loads(line) for line in done.stdout.splitlines()]
    assert (first["state"], first["new_records"], first["version"], first["parent"]) == ("updated", 8, "cli:2", "cli:1")
    assert first["data"]["records"] == 8 + 4  # the 8 new records and half of the 8 older ones (replay 0.5)
    assert first["gate"]["status"] == "passed" and first["live"] == "cli@staging", first["gate"]
    assert first["gate"]["update"]["new"]["exact_match"] > first["gate"]["live"]["new"]["exact_match"]
    assert (second["state"], second["since"], second["new_records"]) == ("skipped", 2, 0)  # nothing new since 2

    store = loop["platform"].store
    version = store.get_model_version(project="default", name="cli", version=2)
    assert version.parent_version == 1 and version.source["data"]["ref"] == "facts:2"
    assert version.source["data"]["since"] == 1 and version.dataset_sha256 == version.source["data"]["sha256"]
    aliases = {a.alias: a.version for a in store.list_model_aliases(project="default", name="cli")}
    assert aliases == {"production": 1, "staging": 2}


def test_cli_update_refuses_a_missing_suite_or_model_before_any_cycle(loop):
    env = {**os.environ, "TUNEFORGE_HOME": loop["settings"].home, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    env.pop("TUNEFORGE_DATABASE_URL", None)
    for name, suite, needle in (("cli", loop["root"] / "no-suite.yaml", "no-suite.yaml"),
                                ("clli", loop["root"] / "suite.yaml", "no registered model 'clli'")):
        done = subprocess.run([*CLI, "update", name, "--data", "facts", "--since", "3", "--suite", suite, "--every",
                               "1s", "--cycles", "1"], capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 1 and needle in done.stderr and "skipped" not in done.stdout, done.stderr


def test_cli_update_resume_continues_a_killed_cycle_from_its_checkpoint(loop):
    from tuneforge.services.registry import register, set_alias

    platform, root = loop["platform"], loop["root"]
    set_alias(platform, "resumed", register(platform, root / "parent", project="default", name="resumed",
                                            created_by="test").version, "production", project="default", actor="test")
    env = {**os.environ, "TUNEFORGE_HOME": loop["settings"].home, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    env.pop("TUNEFORGE_DATABASE_URL", None)
    args = [*CLI, "update", "resumed", "--data", "facts:2", "--since", "1", "--suite", root / "suite.yaml",
            "--max-drop", "exact_match=1", "--set", "train.max_steps=200", "--set", "train.save_steps=5", "--json"]
    killed = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    updates = loop["settings"].home_dir / "updates"
    try:
        def checkpointed() -> bool:  # a complete checkpoint (its trainer state reads back whole), not only begun
            return any(RunDir(folder).complete_checkpoints() for folder in updates.glob("resumed-*"))

        wait_for(lambda: killed.poll() is not None or checkpointed(), timeout=120, what="the update's first checkpoint")
    finally:
        killed.kill()
        _, err = killed.communicate()
    assert killed.returncode < 0, err.decode()[-3000:]  # killed, not ended
    [folder] = updates.glob("resumed-*")
    done = subprocess.run([*args, "--resume"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    [outcome] = [json.loads(line) for line in done.stdout.splitlines()]
    assert f"resuming the interrupted cycle in {folder}" in done.stderr
    assert (outcome["state"], outcome["resumed"], outcome["version"]) == ("updated", True, "resumed:2")
    assert [p.name for p in updates.glob("resumed-*")] == [folder.name]  # no second folder: the same cycle
    assert json.loads((folder / "cycle.json").read_text())["version"] == "resumed:2"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["resumed_from"] and summary["resumed_from"].startswith("checkpoint-"), summary
    again = subprocess.run([*args, "--resume", "--min-new", "100"], capture_output=True, text=True, env=env, timeout=300)
    assert "no interrupted cycle of resumed to resume" in again.stderr, again.stderr


def test_update_continues_the_live_adapter_and_the_gate_blocks_a_worse_one(loop):
    from tuneforge.errors import ConfigError, ConflictError
    from tuneforge.services.registry import resolve_model_version, set_split

    # A learning rate too small to move anything: the update answers as the live adapter (a new one would not).
    kept = update(loop, "adder", dataset="facts:2", since=1, replay=0.0,
                  overrides=["train.learning_rate=1e-12", "train.max_steps=1"])
    assert kept.gate["live"]["old"]["exact_match"] == 1.0 and kept.gate["update"]["old"] == kept.gate["live"]["old"]
    assert kept.passed and kept.live == "adder@staging"

    worse = update(loop, "adder", since=2, replay=0.0, go_live="production")  # facts:3 adds wrong sums
    assert worse.version.version == 3 and worse.version.parent_version == 1 and not worse.passed
    assert worse.gate["update"]["old"]["exact_match"] < 0.5 and "old/exact_match fell" in worse.gate["regressions"][0]
    assert worse.live is None and worse.version.scores["gate"]["status"] == "failed"
    aliases = {a.alias: a.version for a in loop["platform"].store.list_model_aliases(project="default", name="adder")}
    assert aliases == {"production": 1, "staging": 2}
    assert resolve_model_version(loop["platform"], "adder", project="default").version == 2  # latest skips it

    with pytest.raises(ConfigError, match="split:SHARE"):
        update(loop, "adder", since=1, go_live="split:1.5")
    with pytest.raises(ConflictError, match="regression gate"):  # a version that failed its gate takes no traffic
        set_split(loop["platform"], project="default", name="adder", alias="production", weights={1: 0.5, 3: 0.5},
                  actor="test")
    shared = update(loop, "adder", dataset="facts:2", since=1, replay=0.0, go_live="split:0.25",
                    overrides=["train.learning_rate=1e-12", "train.max_steps=1"])
    assert shared.passed and shared.version.version == 4 and shared.live.startswith("adder@production split")
    production = next(a for a in loop["platform"].store.list_model_aliases(project="default", name="adder")
                      if a.alias == "production")
    assert production.split() == {1: 0.75, 4: 0.25}


def test_update_goes_live_under_load_and_rolls_back(loop):
    from tuneforge.services.registry import rollback_alias, set_alias

    updated = update(loop, "swap", dataset="facts:2", since=1, replay=1.0)
    assert updated.passed and updated.version.version == 2
    ask = [{"role": "user", "content": "name=Maria"}]
    with running_server(loop["settings"], projects=("default",), workers=0) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=server.keys["default"], max_retries=0)
        reply = lambda model: client.chat.completions.create(model=model, messages=ask, **GREEDY)  # noqa: E731
        own = {v: reply(f"swap:{v}").choices[0].message.content for v in (1, 2)}
        assert own[1] != own[2] and own[2].startswith("Mar")
        answers, failures, stop = [], [], threading.Event()

        def client_loop() -> None:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    content = reply("swap@production").choices[0].message.content
                    answers.append((started, time.monotonic(), content))
                except Exception as exc:  # noqa: BLE001 - every failure is the test's finding
                    failures.append(repr(exc))

        threads = [threading.Thread(target=client_loop) for _ in range(8)]
        for thread in threads:
            thread.start()
        wait_for(lambda: len(answers) >= 16, timeout=60, what="answers before the alias move")
        moving = time.monotonic()
        set_alias(loop["platform"], "swap", 2, "production", project="default", actor="test")
        moved = time.monotonic()
        wait_for(lambda: sum(s > moved for s, _, _ in answers) >= 16, timeout=60, what="answers after the move")
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        assert failures == []
        assert {a for _, _, a in answers} <= {own[1], own[2]}  # each answer is exactly one version's
        assert all(a == own[1] for _, end, a in answers if end < moving)
        assert all(a == own[2] for start, _, a in answers if start > moved)

        rollback_alias(loop["platform"], "swap", "production", project="default", actor="test")
        assert reply("swap@production").choices[0].message.content == own[1]
        with pytest.raises(openai.BadRequestError, match="failed the regression gate"):
            reply("adder:3")  # the update that failed its gate is never served


def test_serve_update_job_through_the_native_api(loop):
    with running_server(loop["settings"], projects=("default",)) as server:
        http = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.keys['default']}"},
                            timeout=60)
        body = {"name": "swap", "from": "production", "dataset": "facts:2", "since": 1, "replay": 0.5,
                "suite": loop["suite"], "min_new": 1000}
        skipped = http.post("/api/v1/updates", json=body)
        assert skipped.status_code == 200, skipped.text
        job = wait_for(lambda: (j := http.get(f"/api/v1/updates/{skipped.json()['id']}").json())["status"]
                       in ("succeeded", "failed") and j, timeout=120, what="the update job")
        assert job["status"] == "succeeded" and job["result"]["state"] == "skipped", job
        assert job["result"]["new_records"] == 8
        logs = http.get(f"/api/v1/updates/{job['id']}/logs").json()["lines"]
        assert any("8 new records in facts:2 since version 1 (at least 1000 needed)" in line for line in logs)
        refused = http.post("/api/v1/updates", json={**body, "name": "nobody"})
        assert refused.status_code == 404

        pairs = {**body, "dataset": "prefs", "min_new": 1, "replay": 0.0, "max_drop": ["exact_match=1"]}
        queued = http.post("/api/v1/updates", json=pairs).json()
        job = wait_for(lambda: (j := http.get(f"/api/v1/updates/{queued['id']}").json())["status"]
                       in ("succeeded", "failed") and j, timeout=180, what="the update job")
        assert job["status"] == "succeeded" and job["result"]["state"] == "updated", job
        assert job["result"]["task"] == "dpo" and job["result"]["data"]["ref"] == "prefs:2"  # pairs train with DPO
        version = loop["platform"].store.get_model_version(project="default", name="swap", version=3)
        assert version.job_id == job["id"] and version.parent_version == 1 and version.scores["gate"]["status"] == \
            "passed"
        logs = http.get(f"/api/v1/updates/{job['id']}/logs").json()["lines"]
        assert any("Update cycle done: swap:3 gate passed, live as swap@staging" in line for line in logs)
