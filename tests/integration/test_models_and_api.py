"""Model references (hub cache, errors) and the Python API."""

from __future__ import annotations

import shutil

import pytest

import tuneforge
from tuneforge.errors import ConfigError, NotFoundError
from tuneforge.models import resolve_model


def test_hub_id_loads_from_the_local_hugging_face_cache(tiny_model, tmp_path, monkeypatch, settings):
    cache = tmp_path / "hub"
    snapshot = cache / "models--acme--tiny-llama" / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_model, snapshot)
    (cache / "models--acme--tiny-llama" / "refs").mkdir()
    (cache / "models--acme--tiny-llama" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    resolved = resolve_model("acme/tiny-llama", cache_dir=settings.model_cache_dir)
    assert resolved.source == "hub" and (resolved.path / "config.json").is_file()
    with pytest.raises(NotFoundError, match="not in the local Hugging Face cache") as caught:
        resolve_model("acme/absent", cache_dir=settings.model_cache_dir)
    assert "hf download acme/absent" in caught.value.hint


@pytest.mark.parametrize("reference", ["no-such-alias", "./missing/dir", "a/b/c"])
def test_unknown_references_are_not_found(reference, settings):
    with pytest.raises(NotFoundError):
        resolve_model(reference, cache_dir=settings.model_cache_dir)


def test_directory_without_config_is_refused(tmp_path, settings):
    with pytest.raises(NotFoundError, match="has no config.json"):
        resolve_model(str(tmp_path), cache_dir=settings.model_cache_dir)


def test_python_api_trains_from_a_mapping(tiny_model, memorize_data, tmp_path):
    result = tuneforge.train({
        "model": str(tiny_model), "method": {"name": "lora", "r": 4, "target_modules": ["q_proj", "v_proj"]},
        "data": {"train": str(memorize_data)}, "train": {"max_steps": 3, "precision": "fp32"},
        "output_dir": str(tmp_path / "run"),
    })
    assert result.summary["global_step"] == 3 and (result.model_path / "adapter_config.json").is_file()


def test_unknown_target_module_names_the_field(tiny_model, memorize_data, tmp_path):
    with pytest.raises(ConfigError, match="target module 'qkv' is not in the model") as caught:
        tuneforge.train({
            "model": str(tiny_model), "method": {"name": "lora", "target_modules": ["qkv"]},
            "data": {"train": str(memorize_data)}, "output_dir": str(tmp_path / "run"),
        })
    assert caught.value.field == "method.target_modules" and "q_proj" in caught.value.hint
