"""The model registry without training: references, content-addressed folders, retention rules, and the
services (register, resolve, aliases, lineage, prune) over a SQLite store with hand-made run folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tuneforge.errors import ConfigError, ConflictError, NotFoundError
from tuneforge.registry.models import (
    ModelRef, folder_sha256, kind_of_format, name_from, parse_ref, prune_candidates, store_folder,
)
from tuneforge.services import registry
from tuneforge.services.catalog import resolve_model_reference
from tuneforge.services.platform import open_platform
from tuneforge.settings import Settings
from tuneforge.storage.records import ModelVersionRecord, VersionStatus


@pytest.mark.parametrize("text, expected", [
    ("bot", ModelRef("bot")), ("bot:3", ModelRef("bot", 3)), ("bot@production", ModelRef("bot", alias="production")),
    ("my.bot-v2_x@latest", ModelRef("my.bot-v2_x", alias="latest")),
    ("ft:tiny:acme::abc", None), ("org/model", None), ("/abs/path", None), ("./run", None), ("m.gguf", None),
    ("bot:x", None), ("report.json", None), ("a@b@c", None),
])
def test_references_parse_or_are_left_to_other_resolvers(text, expected):
    assert parse_ref(text) == expected


def test_folders_are_stored_once_by_content(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    for folder in (one, two):
        (folder / "sub").mkdir(parents=True)
        (folder / "weights.bin").write_bytes(b"\x00\x01" * 100)
        (folder / "sub" / "config.json").write_text("{}")
    (two / "optimizer.pt").write_bytes(b"resume only")  # a checkpoint's resume files do not count
    assert folder_sha256(one) == folder_sha256(two)
    digest, stored = store_folder(one, root=tmp_path / "store")
    again, stored_again = store_folder(two, root=tmp_path / "store")
    assert (digest, stored) == (again, stored_again) and stored.name == digest
    assert sorted(p.name for p in stored.rglob("*")) == ["config.json", "sub", "weights.bin"]
    (one / "weights.bin").write_bytes(b"changed")
    assert folder_sha256(one) != digest
    assert [p.name for p in (tmp_path / "store").glob("*/.staging-*")] == []


def test_kinds_names_and_retention_rule():
    assert [kind_of_format(f) for f in ("gguf q8_0", "onnx fp32", "torch.ao int8 dynamic", "transformers fp32")] == \
        ["gguf", "onnx", "int8", "full"]
    assert name_from("my suffix!") == "my-suffix" and name_from("???") == "model"
    versions = [ModelVersionRecord(id=str(i), project="p", name="m", kind="adapter", artifact_path="", version=i,
                                   artifact_sha256="", base_model="", size_bytes=0,
                                   status=VersionStatus.PRUNED if i == 1 else VersionStatus.READY) for i in range(1, 8)]
    assert [v.version for v in prune_candidates(versions, keep=2, aliased={3})] == [5, 4, 2]
    assert prune_candidates(versions, keep=10, aliased=set()) == []
    with pytest.raises(ConfigError):
        prune_candidates(versions, keep=-1, aliased=set())


# --- services over a SQLite store -------------------------------------------------------------------------
@pytest.fixture
def platform(tmp_path):
    opened = open_platform(Settings(home=str(tmp_path / "home"), base_models={"tiny-llama": str(tmp_path)}))
    yield opened
    opened.close()


def fake_run(folder: Path, *, weights: bytes, data: Path) -> Path:
    """A completed run folder as training leaves it: marker, config, summary, adapter."""
    (folder / "adapter").mkdir(parents=True)
    (folder / "adapter" / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/models/tiny"}))
    (folder / "adapter" / "adapter_model.safetensors").write_bytes(weights)
    (folder / "tuneforge_run.json").write_text(json.dumps({"status": "completed", "base_model": "/models/tiny",
                                                           "model": "tiny-llama", "method": "lora"}))
    (folder / "config.yaml").write_text(yaml.safe_dump({"model": "tiny-llama", "data": {"train": str(data)}}))
    (folder / "summary.json").write_text(json.dumps({"train_loss": 1.5, "eval_loss": None, "final_loss": 1.2}))
    return folder


def test_register_resolve_alias_rollback_and_lineage(platform, tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text('{"text": "hello"}\n')
    runs = [fake_run(tmp_path / f"run{i}", weights=bytes([i]) * 64, data=data) for i in range(3)]
    v1, v2, v3 = (registry.register(platform, run, project="acme", name="bot", created_by="me") for run in runs)
    assert [v.version for v in (v1, v2, v3)] == [1, 2, 3] and v1.kind == "adapter"
    assert Path(v1.artifact_path).is_relative_to(registry.models_root(platform.settings))
    assert v1.base_model == "/models/tiny" and v1.scores == {"training": {"train_loss": 1.5, "final_loss": 1.2}}
    assert v1.dataset_sha256 == registry.file_sha256(data) and v1.config["model"] == "tiny-llama"

    resolve = registry.resolve_model_version
    assert resolve(platform, "bot", project="acme") == v3 and resolve(platform, "bot:1", project="acme") == v1
    assert resolve(platform, "tiny-llama", project="acme") is None  # a bare unregistered name: not the registry's
    assert resolve(platform, "bot", project="other") is None
    registry.set_alias(platform, "bot", 1, "production", project="acme", actor="alice")
    registry.set_alias(platform, "bot", 2, "production", project="acme", actor="alice")
    assert resolve(platform, "bot@production", project="acme") == v2
    assert resolve_model_reference(platform, "bot@production", project="acme") == v2.artifact_path
    back = registry.rollback_alias(platform, "bot", "production", project="acme", actor="bob")
    assert (back.from_version, back.to_version) == (2, 1) and resolve(platform, "bot@production", project="acme") == v1
    with pytest.raises(NotFoundError, match="no registered model 'bto'") as found:
        resolve(platform, "bto:1", project="acme")
    assert "did you mean 'bot'" in found.value.hint
    with pytest.raises(NotFoundError, match="model 'bot' has no alias 'producton'") as found:
        resolve(platform, "bot@producton", project="acme")
    assert "did you mean 'production'" in found.value.hint
    with pytest.raises(NotFoundError, match="model 'bot' has no version 9"):
        resolve(platform, "bot:9", project="acme")
    with pytest.raises(ConfigError):
        registry.set_alias(platform, "bot", 1, "latest", project="acme", actor="alice")

    chain = registry.lineage(platform, "bot:3", project="acme")
    assert chain["run_dir"] == str(runs[2].resolve()) and chain["dataset_sha256"] == v1.dataset_sha256
    assert chain["base_model"] == "/models/tiny" and chain["base_model_name"] == "tiny-llama"
    digest, trained = registry.trained_on(platform, str(data), project="acme")
    assert digest == v1.dataset_sha256 and [v.version for v in trained] == [1, 2, 3]
    with pytest.raises(ConfigError):
        registry.trained_on(platform, "not-a-digest", project="acme")


def test_prune_keeps_aliased_and_shared_bytes_and_reports_what_it_freed(platform, tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text("{}\n")
    weights = [b"a" * 1000, b"b" * 1000, b"a" * 1000, b"c" * 1000, b"d" * 1000]  # v3 has v1's bytes
    for i, w in enumerate(weights):
        registry.register(platform, fake_run(tmp_path / f"r{i}", weights=w, data=data), project="acme", name="bot",
                          created_by="me")
    registry.set_alias(platform, "bot", 2, "production", project="acme", actor="alice")
    v1, v3 = (platform.store.get_model_version(project="acme", name="bot", version=n) for n in (1, 3))
    result = registry.prune(platform, "bot", project="acme", keep=2)
    assert [v.version for v in result.pruned] == [3, 1] and result.kept == [2, 4, 5]
    assert not Path(v1.artifact_path).exists() and v1.artifact_path == v3.artifact_path
    assert result.bytes_freed == registry.folder_bytes(tmp_path / "r0" / "adapter")  # v1/v3's folder, deleted once
    with pytest.raises(NotFoundError, match="pruned"):
        registry.resolve_model_version(platform, "bot:1", project="acme")
    with pytest.raises(ConflictError):
        registry.set_alias(platform, "bot", 3, "staging", project="acme", actor="alice")
    assert registry.show(platform, "bot:1", project="acme")["status"] == "pruned"
    assert registry.prune(platform, "bot", project="acme", keep=2).pruned == []


def test_registering_needs_a_completed_run_and_a_valid_name(platform, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("{}\n")
    run = fake_run(tmp_path / "run", weights=b"x", data=data)
    with pytest.raises(ConfigError):
        registry.register(platform, run, project="acme", name="bad name", created_by="me")
    marker = json.loads((run / "tuneforge_run.json").read_text())
    (run / "tuneforge_run.json").write_text(json.dumps({**marker, "status": "running"}))
    with pytest.raises(ConflictError, match="has not completed"):
        registry.register(platform, run, project="acme", name="bot", created_by="me")
    with pytest.raises(NotFoundError, match="nothing to register"):
        registry.register(platform, tmp_path / "missing", project="acme", name="bot", created_by="me")
    adapter = registry.register(platform, run / "adapter", project="acme", name="bot", created_by="me")
    assert adapter.kind == "adapter" and adapter.base_model == "/models/tiny" and adapter.source["path"]


def test_a_checkpoint_registers_without_its_resume_files(platform, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("{}\n")
    run = fake_run(tmp_path / "run", weights=b"final", data=data)
    checkpoint = run / "checkpoints" / "checkpoint-2"
    checkpoint.mkdir(parents=True)
    (checkpoint / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/models/tiny"}))
    (checkpoint / "adapter_model.safetensors").write_bytes(b"step two")
    (checkpoint / "optimizer.pt").write_bytes(b"x" * 10_000)
    version = registry.register(platform, checkpoint, project="acme", name="bot", created_by="me")
    assert version.source["checkpoint"] == "checkpoint-2" and version.source["run_dir"] == str(run.resolve())
    assert version.kind == "adapter" and version.size_bytes < 1000 and version.scores == {}
    assert sorted(p.name for p in Path(version.artifact_path).iterdir()) == ["adapter_config.json",
                                                                             "adapter_model.safetensors"]
    assert version.dataset_sha256 == registry.file_sha256(data)


def test_a_compressed_output_is_the_next_version_linked_to_its_parent(platform, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("{}\n")
    parent = registry.register(platform, fake_run(tmp_path / "run", weights=b"w", data=data), project="acme",
                               name="bot", created_by="me")
    output = tmp_path / "compressed"
    (output / "model").mkdir(parents=True)
    (output / "model" / "model.gguf").write_bytes(b"GGUF" + b"\0" * 100)
    report = {"recipe": {"steps": [{"name": "export", "format": "gguf"}]}, "summary": {"size_reduction": 0.7},
              "stages": [{"format": "transformers fp32", "quality": {}},
                         {"format": "gguf q8_0", "quality": {"qa": {"exact_match": 0.9}}}]}
    child = registry.register_compressed(platform, parent=parent, output=output, report=report, created_by="me")
    assert (child.ref, child.kind, child.parent_version, child.base_model) == ("bot:2", "gguf", 1, parent.base_model)
    assert child.dataset_sha256 == parent.dataset_sha256 and child.scores["qa"] == {"exact_match": 0.9}
    assert registry.loadable_path(child).endswith("model.gguf")
    chain = registry.lineage(platform, "bot:2", project="acme")
    assert [c["version"] for c in chain["chain"]] == ["bot:2", "bot:1"] and chain["config"]["model"] == "tiny-llama"
