"""The online loop measured: a lookup task that drifts (new keys the live version has never seen), an update
that goes live through the regression gate, and the time from "200 new records" to "serving the update".

    PYTHONPATH=src python benchmarks/online_loop.py [--model tiny|PATH|smollm2-135m] [--new 200] [--threads 2]

1. Data set ``lookup`` version 1: ``--old`` (20) keys, each asked in 10 phrasings ("code of item K?", "find K",
   ...) -> the key's word; a LoRA is trained on it and registered as ``lookup-bot:1`` (``production``).
2. Drift: version 2 appends ``--new`` (20) new keys: 200 new records. The live version's accuracy on them is measured.
3. ``update_model`` continues the live adapter on the new records plus a ``--replay`` (50 %) share of the old ones, gates it
   against the live version (``exact_match`` may drop 0.02 on the old keys) and moves ``production``.
4. A real server (the openai SDK) answers ``lookup-bot@production``; the clock stops when it answers a new key
   correctly. Figures: accuracy on new keys before / after (target: +30 points), accuracy on old keys after as a
   share of before (target: >= 98 %), seconds from the 200 records' append to serving.

Exact-match accuracy over every key (greedy, 6 new tokens). The tiny model is a random Llama built here
(2 layers, hidden 64 by default): the figures measure the loop, not a language model's knowledge.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

WORDS = ["fox", "dog", "Paris", "teacher", "Lisbon", "quick", "brown", "lazy", "Maria", "city", "job", "age",
         "name", "text", "capital", "France"]


TEMPLATES = ["code of item {k}?", "item {k} code?", "what is the code of {k}?", "{k} -> ?", "code {k}",
             "lookup {k}", "key {k}?", "find {k}", "{k}?", "get {k}"]


def records(keys: range, *, seed: int) -> list[dict]:
    """Each key asked in every template -> the key's word (drawn with ``seed``): 10 records a key."""
    rng = random.Random(seed)
    words = {k: rng.choice(WORDS) for k in keys}
    return [{"messages": [{"role": "user", "content": t.format(k=k)}, {"role": "assistant", "content": words[k]}]}
            for k in keys for t in TEMPLATES]


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def accuracy(model: str, data: Path, *, settings) -> float:
    """Exact match of ``model`` on ``data`` (greedy, 6 new tokens)."""
    from tuneforge.services.evaluation import evaluate

    suite = {"tasks": [{"name": "lookup", "data": str(data), "metrics": ["exact_match"], "max_new_tokens": 6}],
             "latency_samples": 0, "batch_size": 64}
    return evaluate(model, suite, settings=settings, store=False).tasks[0].metrics["exact_match"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny", help="tiny (a random Llama built here), a model folder or alias")
    parser.add_argument("--old", type=int, default=20, help="keys of version 1 (10 records each)")
    parser.add_argument("--new", type=int, default=20, help="new keys the drift adds (version 2; 10 records each)")
    parser.add_argument("--replay", type=float, default=0.5, help="share of the old records the update replays")
    parser.add_argument("--steps", type=int, default=400, help="optimizer steps of the first training")
    parser.add_argument("--update-steps", type=int, default=250, help="optimizer steps of the update")
    parser.add_argument("--layers", type=int, default=2, help="layers of the tiny model")
    parser.add_argument("--hidden", type=int, default=64, help="hidden size of the tiny model")
    parser.add_argument("--lr", type=float, default=1e-2, help="learning rate of the first training")
    parser.add_argument("--update-lr", type=float, default=3e-3, help="learning rate of the update")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from tuneforge.services.datasets import append_data, import_data
    from tuneforge.services.online import UpdateRequest, update_model
    from tuneforge.services.platform import open_platform
    from tuneforge.services.registry import register, set_alias
    from tuneforge.services.training import train
    from tuneforge.settings import Settings

    root = Path(tempfile.mkdtemp(prefix="online-loop-"))
    model = args.model
    if model == "tiny":
        from fixtures.tiny import build_tiny_llama

        model = str(build_tiny_llama(root / "tiny", layers=args.layers, hidden=args.hidden))
    settings = Settings(home=str(root / "home"), concurrency=0, threads_per_job=args.threads)
    platform = open_platform(settings)
    old = write(root / "old.jsonl", records(range(args.old), seed=1))
    new = write(root / "new.jsonl", records(range(500, 500 + args.new), seed=2))
    import_data(platform, old, project="default", name="lookup")
    started = time.perf_counter()
    config = {"model": model, "method": {"name": "lora", "r": 16, "alpha": 32, "dropout": 0.0},
              "data": {"train": [{"dataset": "lookup:1"}]}, "output_dir": str(root / "first"),
              "train": {"max_steps": args.steps, "learning_rate": args.lr, "batch_size": 16, "warmup": 0,
                        "save_steps": 10**6, "logging_steps": 50}}
    from tuneforge.services.data_reports import dataset_resolver

    train(config, settings=settings, resolve_dataset=dataset_resolver(settings, project="default"))
    live = register(platform, root / "first", project="default", name="lookup-bot", created_by="benchmark")
    set_alias(platform, "lookup-bot", live.version, "production", project="default", actor="benchmark")
    print(f"first training: {time.perf_counter() - started:.0f} s", flush=True)
    before = {"old": accuracy(live.artifact_path, old, settings=settings),
              "new": accuracy(live.artifact_path, new, settings=settings)}
    print(f"live {live.ref}: old keys {before['old']:.1%}, new keys {before['new']:.1%}", flush=True)
    serve_and_measure(platform, settings, args=args, new=new, old=old, before=before,
                      request=UpdateRequest.model_validate({
                          "name": "lookup-bot", "dataset": "lookup", "since": 1, "replay": args.replay, "go_live": "production",
                          "suite": {"tasks": [{"name": "old", "data": str(old), "metrics": ["exact_match"],
                                               "max_new_tokens": 6}], "latency_samples": 0, "batch_size": 64},
                          "overrides": [f"train.max_steps={args.update_steps}",
                                        f"train.learning_rate={args.update_lr}"]}),
                      update_model=update_model, append=lambda: append_data(platform, "lookup", new, project="default"))
    platform.close()


def serve_and_measure(platform, settings, *, args, new: Path, old: Path, before: dict, request, update_model,
                      append) -> None:
    """Start a server, append the new records, update, and time until the server answers a new key right."""
    import openai

    from fixtures.platform import running_server

    first_new = json.loads(new.read_text().splitlines()[0])["messages"]
    with running_server(settings, projects=("default",), workers=0) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=server.keys["default"], max_retries=0)
        ask = lambda: client.chat.completions.create(  # noqa: E731
            model="lookup-bot@production", messages=first_new[:1], temperature=0, max_tokens=6).choices[0].message.content
        ask()  # the live version is loaded: the clock measures the update, not the first load
        clock = time.perf_counter()
        append()  # the clock starts when the new records arrive
        result = update_model(platform, request, project="default", actor="benchmark",
                              run_dir=Path(settings.home) / "update")
        answer = ask()
        serving = time.perf_counter() - clock
    after = {"old": accuracy(result.version.artifact_path, old, settings=settings),
             "new": accuracy(result.version.artifact_path, new, settings=settings)}
    gain = (after["new"] - before["new"]) * 100
    kept = after["old"] / before["old"] if before["old"] else float("nan")
    print(f"update {result.version.ref}: gate {result.gate['status']}, live as {result.live}; "
          f"timings {result.view()['timings']}")
    print(f"new keys: {before['new']:.1%} -> {after['new']:.1%} ({gain:+.1f} points; target >= +30)")
    print(f"old keys: {before['old']:.1%} -> {after['old']:.1%} ({kept:.1%} of before; target >= 98%)")
    print(f"from {args.new * len(TEMPLATES)} new records to serving the update: {serving:.1f} s (server answered {answer!r}, "
          f"expected {first_new[1]['content']!r})")


if __name__ == "__main__":
    main()
