"""Monitoring end to end: a tiny model driven to NaN fires the alert (CLI and platform job, webhook on 127.0.0.1),
``on_anomaly: pause`` pauses the job, and ``report_to`` writes TensorBoard events and MLflow runs that read back."""

from __future__ import annotations

import json

import httpx2 as httpx
import pytest
import yaml
from fixtures.platform import running_server, wait_for, write_chat
from fixtures.webhook import webhook_receiver
from test_cli import tuneforge, write_config

from tuneforge.settings import Settings

# LoRA+ trains the B matrices at learning_rate x ratio: 5e36 overflows float32 activations at step 2 (loss NaN).
DIVERGE = {"method": {"name": "lora", "loraplus_lr_ratio": 1e37},
           "train": {"max_steps": 8, "batch_size": 4, "learning_rate": 0.5, "logging_steps": 1, "precision": "fp32",
                     "save_steps": 100, "warmup": 0}}


def test_the_cli_prints_the_nan_alert_posts_it_and_stops_with_an_error(tiny_model, memorize_data, tmp_path):
    config = write_config(tmp_path / "c.yaml", tiny_model, memorize_data, tmp_path / "run",
                          train={**DIVERGE["train"], "on_anomaly": "stop"})
    config.write_text(yaml.safe_dump({**yaml.safe_load(config.read_text()), "method": DIVERGE["method"]}))
    with webhook_receiver() as receiver:
        result = tuneforge("train", config, extra_env={"TUNEFORGE_ALERT_WEBHOOK_URL": receiver.url})
    assert result.returncode != 0
    assert "alert (loss_not_finite): training loss is nan at step 2" in result.stdout, result.stdout
    assert "training stopped by an anomaly alert (loss_not_finite)" in result.stderr, result.stderr
    sent = [body for body in receiver.bodies if body["kind"] == "loss_not_finite"]
    assert len(sent) == 1 and sent[0]["value"] == "nan" and sent[0]["threshold"] == "finite" and sent[0]["step"] == 2
    assert sent[0]["job"] == str(tmp_path / "run")
    assert json.loads((tmp_path / "run" / "tuneforge_run.json").read_text())["status"] == "interrupted"


def test_report_to_writes_tensorboard_events_and_an_mlflow_run_that_read_back(tiny_model, memorize_data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from tuneforge.services.training import train

    config = {"model": str(tiny_model), "data": {"train": str(memorize_data)}, "output_dir": str(tmp_path / "tb-run"),
              "train": {"max_steps": 4, "batch_size": 4, "logging_steps": 1, "precision": "fp32",
                        "report_to": ["tensorboard", "mlflow"]}}
    result = train(config, settings=Settings(home=str(tmp_path / "home")))
    logged = [json.loads(line) for line in (result.output_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [row["loss"] for row in logged if "loss" in row]
    assert len(losses) == 4

    events = EventAccumulator(str(result.output_dir / "tensorboard")).Reload()
    scalars = events.Scalars("train/loss")
    assert [s.step for s in scalars] == [1, 2, 3, 4]
    assert [s.value for s in scalars] == pytest.approx(losses, rel=1e-5)

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{result.output_dir / 'mlruns' / 'mlflow.db'}")
    runs = client.search_runs(experiment_ids=[e.experiment_id for e in client.search_experiments()])
    assert [r.info.run_name for r in runs] == ["tb-run"] and runs[0].info.status == "FINISHED"
    history = client.get_metric_history(runs[0].info.run_id, "loss")
    assert [m.step for m in history] == [1, 2, 3, 4]
    assert [m.value for m in history] == pytest.approx(losses, rel=1e-5)
    assert runs[0].data.params["learning_rate"] == "0.0002"


def test_a_diverging_job_alerts_and_pauses_under_on_anomaly_pause(tmp_path, tiny_model):
    with webhook_receiver() as receiver:
        settings = Settings(home=str(tmp_path / "home"), concurrency=1, poll_seconds=0.2, heartbeat_seconds=0.3,
                            threads_per_job=1, base_models={"tiny-llama": str(tiny_model)},
                            alert_webhook_url=receiver.url)
        with running_server(settings) as server:
            key = {"Authorization": f"Bearer {server.keys['acme']}"}
            api = httpx.Client(base_url=server.url, headers=key, timeout=60)
            data = write_chat(tmp_path / "chat.jsonl")
            with data.open("rb") as handle:
                file_id = api.post("/v1/files", files={"file": ("chat.jsonl", handle)},
                                   data={"purpose": "fine-tune"}).json()["id"]
            config = {"model": "tiny-llama", "data": {"train": file_id}, "method": DIVERGE["method"],
                      "train": {**DIVERGE["train"], "on_anomaly": "pause"}}
            job = api.post("/api/v1/fine-tuning/jobs", json=config).json()
            paused = wait_for(lambda: (j := api.get(f"/api/v1/fine-tuning/jobs/{job['id']}").json())["status"]
                              in ("paused", "succeeded", "failed") and j, timeout=180, what="the pause")
            assert paused["status"] == "paused", paused

            events = api.get(f"/v1/fine_tuning/jobs/{job['id']}/events", params={"limit": 100}).json()["data"]
            alerts = [e for e in events if e["type"] == "alert"]
            assert alerts and alerts[-1]["data"]["kind"] == "loss_not_finite" and alerts[-1]["level"] == "error"
            assert alerts[-1]["data"]["step"] == 2 and "training loss is nan" in alerts[-1]["message"]
            assert any("paused after a checkpoint" in e["message"] for e in events)
            checkpoints = api.get(f"/v1/fine_tuning/jobs/{job['id']}/checkpoints").json()["data"]
            assert [c["step_number"] for c in checkpoints] == [3]  # the step after the alert

            metrics = httpx.get(server.url + "/metrics", headers=key).text
            assert 'tuneforge_alerts_total{kind="loss_not_finite"} 1.0' in metrics
            assert 'tuneforge_alerts_total{kind="loss_spike"} 0.0' in metrics
            assert "tuneforge_disk_free_bytes" not in metrics  # server-wide gauges need the admin key
        sent = [body for body in receiver.bodies if body["kind"] == "loss_not_finite"]
        assert len(sent) == 1 and sent[0]["job"] == job["id"] and sent[0]["project"] == "acme"
        assert sent[0]["value"] == "nan" and sent[0]["threshold"] == "finite"
