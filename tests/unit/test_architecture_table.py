"""The architecture table is well-formed data (the matrix test in tests/integration checks it against models)."""

from __future__ import annotations

import pytest

from tuneforge.models.architectures import ARCHITECTURES, ATTENTIONS, KINDS, POSITIONS, architecture_for

REQUIRED = ["llama", "mistral", "mixtral", "qwen2", "qwen3", "phi3", "glm4", "deepseek_v3", "gpt2", "gpt_neox",
            "falcon", "bloom", "opt", "t5", "bart", "bert"]


def test_table_has_at_least_17_families_including_the_required_ones() -> None:
    assert len(ARCHITECTURES) >= 17
    missing = [t for t in REQUIRED if t not in ARCHITECTURES]
    assert not missing, missing
    assert {"gemma2", "gemma3_text"} & ARCHITECTURES.keys()


@pytest.mark.parametrize("model_type", list(ARCHITECTURES))
def test_entry_is_well_formed(model_type: str) -> None:
    arch = ARCHITECTURES[model_type]
    assert arch.model_type == model_type and architecture_for(model_type) is arch
    assert arch.kind in KINDS and arch.attention in ATTENTIONS and arch.position in POSITIONS
    assert arch.family and arch.layers_attr
    assert arch.lora_targets and len(set(arch.lora_targets)) == len(arch.lora_targets)
    assert all(t and "." not in t for t in arch.lora_targets)


def test_known_facts() -> None:
    assert ARCHITECTURES["bloom"].position == "ALiBi"
    assert ARCHITECTURES["t5"].position == "relative"
    assert ARCHITECTURES["t5"].kind == ARCHITECTURES["bart"].kind == "encoder-decoder"
    assert ARCHITECTURES["bert"].kind == "encoder"
    assert ARCHITECTURES["falcon"].attention == "MQA"
    assert ARCHITECTURES["mixtral"].notes  # the fused-experts caveat


@pytest.mark.parametrize(
    ("model_type", "targets"),
    [("baichuan", {"W_pack", "o_proj", "gate_proj", "up_proj", "down_proj"}),
     ("internlm2", {"wqkv", "wo", "w1", "w2", "w3"})],
)
def test_remote_code_families(model_type: str, targets: set[str]) -> None:
    arch = ARCHITECTURES[model_type]
    assert arch.remote_code and "trust_remote_code" in arch.notes
    assert set(arch.lora_targets) == targets


def test_unknown_family_has_no_row() -> None:
    assert architecture_for("no-such-model") is None
