"""The hand-written baseline of ``train_throughput.py --compare-reference``: what a user writes with transformers'
Trainer and PEFT alone (LoRA r16 on all linear layers, batch 8, bf16 autocast, loss on the answers).

    .venv/bin/python benchmarks/reference_trainer.py MODEL_DIR TRAIN.jsonl --steps 16
It prints one JSON line: steps, seconds, tokens/s (non-padding input tokens) per wall and per CPU second (the
steadier figure on a shared machine), and peak RSS (MiB).
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch
from datasets import Dataset
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments


def tokenize(tokenizer, record: dict, max_length: int) -> dict:
    """Chat template over the messages; labels only on the assistant's answer."""
    prompt = tokenizer.apply_chat_template(record["messages"][:-1], add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(record["messages"], tokenize=False)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ids = tokenizer(full, add_special_tokens=False)["input_ids"][:max_length]
    labels = [-100] * len(prompt_ids) + ids[len(prompt_ids):]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels[:len(ids)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("train")
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--output", default="/tmp/reference-trainer")
    args = parser.parse_args()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    with open(args.train) as f:
        rows = [tokenize(tokenizer, json.loads(line), 256) for line in f]
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    trainer = Trainer(
        model=model,
        args=TrainingArguments(output_dir=args.output, max_steps=args.steps, per_device_train_batch_size=8,
                               learning_rate=3e-4, bf16=True, use_cpu=not torch.cuda.is_available(), logging_steps=1,
                               save_strategy="no", report_to=[], disable_tqdm=True, seed=42,
                               include_num_input_tokens_seen="non_padding"),
        train_dataset=Dataset.from_list(rows),
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100),
    )
    started, cpu_started = time.perf_counter(), time.process_time()
    trainer.train()
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"steps": trainer.state.global_step, "seconds": round(seconds, 2),
                      "tokens_per_second": round(trainer.state.num_input_tokens_seen / seconds, 2),
                      "tokens_per_cpu_second": round(trainer.state.num_input_tokens_seen / cpu_seconds, 2),
                      "peak_rss_mb": round(peak, 1), "final_loss": trainer.state.log_history[-2].get("loss")}))


if __name__ == "__main__":
    main()
