"""Adapters stacked into one per-sequence GGUF LoRA adapter (the llama.cpp engine's mixed-adapter batches): a GGUF
adapter file reads back as the tensors it was written from, and each adapter of a stack sits in its own slot of
rank components with its whole scale folded into B, zeros elsewhere."""

from __future__ import annotations

import numpy as np
from transformers import AutoConfig

from fixtures.serving import make_lora_adapter
from tuneforge.compression.export.gguf_lora import (
    lora_tensors,
    read_gguf_lora,
    write_gguf_lora,
    write_stacked_gguf_lora,
)


def test_a_stack_puts_each_adapter_in_its_own_slot_with_its_scale(tmp_path, tiny_model):
    import gguf

    config = AutoConfig.from_pretrained(tiny_model)
    small = make_lora_adapter(tiny_model, tmp_path / "r2", seed=1, rank=2)
    large = make_lora_adapter(tiny_model, tmp_path / "r4", seed=2, rank=4)
    alpha_small, small_tensors = lora_tensors(small, config)
    alpha_large, large_tensors = lora_tensors(large, config)
    assert (alpha_small, alpha_large) == (8.0, 16.0)

    write_gguf_lora(small, config, tmp_path / "small.gguf")
    alpha, read = read_gguf_lora(tmp_path / "small.gguf")
    assert alpha == alpha_small and read.keys() == small_tensors.keys()
    for name, (a, b) in small_tensors.items():
        np.testing.assert_array_equal(read[name][0], a)
        np.testing.assert_array_equal(read[name][1], b)

    stack = tmp_path / "stack.gguf"
    write_stacked_gguf_lora([(alpha_small, small_tensors), None, (alpha_large, large_tensors)], config, stack, rank=4)
    reader = gguf.GGUFReader(str(stack))
    assert reader.get_field("adapter.lora.per_sequence").contents() is True
    alpha, stacked = read_gguf_lora(stack)
    assert alpha == 0.0  # llama.cpp scales a per-sequence stack by 1: the scales are in B
    assert stacked.keys() == small_tensors.keys() | large_tensors.keys()
    for name, (a, b) in stacked.items():
        assert a.shape[0] == b.shape[1] == 12  # 3 slots of rank 4
        a_small, b_small = small_tensors[name]
        np.testing.assert_array_equal(a[0:2], a_small)
        np.testing.assert_array_equal(b[:, 0:2], b_small * np.float32(alpha_small / 2))
        assert not a[2:8].any() and not b[:, 2:8].any()  # the small one's padding and the free slot
        a_large, b_large = large_tensors[name]
        np.testing.assert_array_equal(a[8:12], a_large)
        np.testing.assert_array_equal(b[:, 8:12], b_large * np.float32(alpha_large / 4))
        # slot 2 alone gives the large adapter's update (llama.cpp: alpha / r times B @ A)
        x = np.random.default_rng(0).standard_normal(a.shape[1]).astype(np.float32)
        mask = np.zeros(12, dtype=np.float32)
        mask[8:12] = 1
        np.testing.assert_allclose(b @ (mask * (a @ x)), (alpha_large / 4) * (b_large @ (a_large @ x)),
                                   rtol=1e-5, atol=1e-6)
