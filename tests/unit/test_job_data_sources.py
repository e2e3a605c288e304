"""A training job queued with several data sources and an eval split keeps their shape (services.jobs)."""

from __future__ import annotations

from fixtures.data import MEMORIZE, write_jsonl

from tuneforge.config import TrainConfig
from tuneforge.services.jobs import create_train_job
from tuneforge.services.platform import open_platform
from tuneforge.settings import Settings


def test_a_job_keeps_weighted_sources_dataset_references_and_the_split(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    a, b = write_jsonl(tmp_path / "a.jsonl", MEMORIZE), write_jsonl(tmp_path / "b.jsonl", MEMORIZE)
    platform = open_platform(Settings(home=str(tmp_path / "home"), allow_local_paths=True))
    config = TrainConfig.model_validate({
        "model": str(model), "data": {"eval": {"split": 0.1}, "train": [
            {"path": str(a), "weight": 0.6}, {"path": str(b), "weight": 0.2},
            {"dataset": "support:3", "since": 2, "weight": 0.2}]}})
    job = create_train_job(platform, project="p", config=config)
    data = TrainConfig.model_validate(job.config).data
    assert [(s.path, s.dataset, s.weight) for s in data.train_sources()] == [
        (str(a), None, 0.6), (str(b), None, 0.2), (None, "support:3", 0.2)]
    assert data.eval_split == 0.1
