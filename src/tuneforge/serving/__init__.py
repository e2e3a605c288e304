"""Inference: engines (torch + PEFT; llama.cpp and vLLM behind extras), the adapter LRU, dynamic batching,
sampling and stop handling, streaming. Many adapters of one base model share one copy of its weights and
are batched together through PEFT's mixed-adapter batches (``adapter_names``)."""
