"""A serve_update job killed (worker and job process, SIGKILL) right after it registered its version resumes on
another worker with that version: it runs the gate and goes live, and registers no second version; an attempt run
after the go-live moves no alias again."""

from __future__ import annotations

import signal

import psutil

from fixtures.data import MEMORIZE, write_jsonl
from fixtures.platform import start_worker, wait_for
from tuneforge.settings import Settings

NEW = [{"messages": [{"role": "user", "content": f"name={n}"}, {"role": "assistant", "content": n[:3]}]}
       for n in ("Maria", "Lopez", "Lisbon", "teacher")]


def kill_tree(process) -> None:
    """The machine dies: the worker and every process under it (the job's own) end at once, with no goodbye."""
    doomed = [process.pid, *(p.pid for p in psutil.Process(process.pid).children(recursive=True))]
    for pid in doomed:
        try:
            psutil.Process(pid).send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    process.wait(timeout=10)


def test_an_update_killed_after_its_registration_resumes_with_the_gate_not_a_second_version(tiny_model, tmp_path):
    from tuneforge.services.datasets import append_data, import_data
    from tuneforge.services.platform import open_platform
    from tuneforge.services.registry import register, set_alias
    from tuneforge.services.training import train
    from tuneforge.services.update_kind import UpdateJobRequest, create_update_job

    settings = Settings(home=str(tmp_path / "home"), concurrency=1, poll_seconds=0.2, heartbeat_seconds=0.3,
                        stale_after_seconds=2.0, threads_per_job=1, allow_local_paths=True)
    old, new = write_jsonl(tmp_path / "old.jsonl", MEMORIZE), write_jsonl(tmp_path / "new.jsonl", NEW)
    platform = open_platform(settings)
    try:
        import_data(platform, old, project="default", name="facts")
        append_data(platform, "facts", new, project="default")
        train({"model": str(tiny_model), "method": {"name": "lora", "r": 4, "alpha": 8, "dropout": 0.0},
               "data": {"train": str(old)}, "output_dir": str(tmp_path / "parent"),
               "train": {"max_steps": 2, "batch_size": 8, "save_steps": 1000, "precision": "fp32"}}, settings=settings)
        set_alias(platform, "kill", register(platform, tmp_path / "parent", project="default", name="kill",
                                             created_by="test").version, "production", project="default", actor="test")
        # A gate of 8 + 4 generations, twice: the kill lands while it runs (the version is registered, not gated).
        suite = {"tasks": [{"name": t, "data": str(p), "metrics": ["exact_match"], "max_new_tokens": 4}
                           for t, p in (("old", old), ("new", new))], "latency_samples": 0}
        request = UpdateJobRequest.model_validate({
            "name": "kill", "dataset": "facts", "since": 1, "replay": 0.0, "suite": suite, "min_new": 1,
            "max_drop": ["exact_match=1"], "overrides": ["train.max_steps=2", "train.save_steps=1000"]})
        job = create_update_job(platform, project="default", request=request)
        store = platform.store

        def registered():
            return store.list_model_versions(project="default", name="kill", job_id=job.id)

        first = start_worker(settings, tmp_path / "worker1.log")
        try:
            wait_for(registered, timeout=180, every=0.02, what="the update's registration")
            kill_tree(first)
        finally:
            first.kill()
        [killed] = registered()
        assert killed.version == 2 and "gate" not in killed.scores  # killed between the registration and the gate
        assert store.get_job(job.id).status == "running"

        second = start_worker(settings, tmp_path / "worker2.log")
        try:
            done = wait_for(lambda: (j := store.get_job(job.id)).status in ("succeeded", "failed") and j,
                            timeout=180, what="the update job to finish on the second worker")
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(timeout=30)
        assert done.status == "succeeded" and done.attempts == 2, done.error
        versions = store.list_model_versions(project="default", name="kill")
        assert [v.version for v in versions] == [1, 2]  # one update, registered once
        assert versions[1].scores["gate"]["status"] == "passed" and versions[1].parent_version == 1
        assert done.result["version"] == "kill:2" and done.result["live"] == "kill@staging"
        aliases = {a.alias: a.version for a in store.list_model_aliases(project="default", name="kill")}
        assert aliases == {"production": 1, "staging": 2}
        messages = [e.message for e in store.list_events(job.id, limit=1000).data]
        assert any("kill:2 was registered by an earlier attempt of this cycle" in m for m in messages)
        assert sum(m.startswith("registered kill:2") for m in messages) == 1

        # An attempt killed after the go-live, before the job's final write, runs once more: nothing happens twice.
        from tuneforge.services.online import UpdateRequest, update_model

        moves = len(store.list_alias_moves(project="default", name="kill"))
        config = {k: v for k, v in job.config.items() if k not in ("min_new", "priority")}
        again = update_model(platform, UpdateRequest.model_validate(config), project="default", actor="test",
                             run_dir=settings.run_dir(job.id), resume=True, job_id=job.id)
        assert (again.version.ref, again.parent.ref, again.passed, again.live) == ("kill:2", "kill:1", True,
                                                                                  "kill@staging")
        assert len(store.list_model_versions(project="default", name="kill")) == 2
        assert len(store.list_alias_moves(project="default", name="kill")) == moves  # no second move
    finally:
        platform.close()
