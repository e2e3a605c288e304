"""Inference server figures for SmolLM2-135M on this CPU (2 threads), through the openai SDK on a real
uvicorn server: time to first token and decode speed for one client; requests/s and latency for 16 concurrent
clients over 1 and over 4 LoRA adapters (random weights, rank 8), against the same requests sent one by one;
for the torch engine (fp32 + PEFT) and the llama.cpp engine (Q8_0 GGUF base, adapters as GGUF LoRA).

    PYTHONPATH=src python benchmarks/serving.py [--threads 2] [--clients 16] [--max-tokens 32] [--rounds 2]
                                                [--engines torch,llamacpp]

The adapters are made with random weights (speed does not depend on what they learned); answers run to
max_tokens unless the model ends its turn first, so throughput is also given in tokens/s.
Every engine's server is `tuneforge serve --engine ENGINE` in a process of its own, as in production (the
clients' threads stay in this process); `--engines vllm` runs it from .venv-vllm (`make vllm-cpu`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROMPT = ("Extract name, age, city and job from the text as key=value pairs separated by semicolons. Text: "
          "Maria Lopez is a 34 year old teacher who has lived in Lisbon since she finished her studies; before "
          "that she spent six years in Porto and two in Madrid, where she taught history and geography at a "
          "small secondary school near the river, and she now also writes a weekly column about education.")


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), interpolated."""
    ordered = sorted(values)
    index = (len(ordered) - 1) * q / 100
    low = int(index)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (index - low)


def ask(client, model: str, max_tokens: int) -> tuple[float, int]:
    """One non-streaming greedy request: (seconds, completion tokens)."""
    started = time.perf_counter()
    reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": PROMPT}],
                                           temperature=0, max_tokens=max_tokens)
    return time.perf_counter() - started, reply.usage.completion_tokens


def one_client(client, model: str, *, repeats: int, max_tokens: int) -> dict[str, float]:
    """Streamed requests one at a time: TTFT and decode tokens/s (after the first token)."""
    firsts, speeds = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        first = None
        chunks = client.chat.completions.create(model=model, messages=[{"role": "user", "content": PROMPT}],
                                                temperature=0, max_tokens=max_tokens, stream=True,
                                                stream_options={"include_usage": True})
        tokens = 0
        for chunk in chunks:
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter()
            if chunk.usage:
                tokens = chunk.usage.completion_tokens
        end = time.perf_counter()
        firsts.append((first or end) - started)
        if first and tokens > 1:
            speeds.append((tokens - 1) / (end - first))
    return {"ttft_p50": percentile(firsts, 50), "ttft_p95": percentile(firsts, 95),
            "decode_tok_s": statistics.mean(speeds) if speeds else 0.0}


def load(client, models: list[str], *, clients: int, rounds: int, max_tokens: int) -> dict[str, float]:
    """``clients`` threads, each sending ``rounds`` requests back to back, spread over ``models``."""
    latencies, tokens, lock = [], [], threading.Lock()

    def worker(index: int) -> None:
        for _ in range(rounds):
            seconds, count = ask(client, models[index % len(models)], max_tokens)
            with lock:
                latencies.append(seconds)
                tokens.append(count)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {"req_s": len(latencies) / wall, "tok_s": sum(tokens) / wall, "p50": percentile(latencies, 50),
            "p95": percentile(latencies, 95)}


def sequential(client, model: str, *, count: int, max_tokens: int) -> dict[str, float]:
    """The same requests, one after another."""
    started = time.perf_counter()
    results = [ask(client, model, max_tokens) for _ in range(count)]
    wall = time.perf_counter() - started
    latencies = [s for s, _ in results]
    return {"req_s": count / wall, "tok_s": sum(t for _, t in results) / wall, "p50": percentile(latencies, 50),
            "p95": percentile(latencies, 95)}


ROOT = Path(__file__).resolve().parents[1]
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"


@contextmanager
def server_process(engine: str, args: argparse.Namespace, *, models: dict[str, str], home: Path) -> Iterator[Any]:
    """``tuneforge serve --engine ENGINE`` in a process of its own (as a real server runs: the clients' threads
    here do not share its interpreter), with ``args.threads`` engine threads; yields an object with ``url`` and
    ``keys['acme']``. vLLM runs from .venv-vllm (its CPU build pins transformers<5.20, so it has a venv of its own)."""
    import subprocess
    from types import SimpleNamespace

    import openai

    from fixtures.platform import temp_platform, wait_for
    from fixtures.postgres import free_port
    from tuneforge.services.platform import create_api_key

    home.mkdir(parents=True, exist_ok=True)
    database = f"sqlite:///{home / 'tuneforge.db'}"
    with temp_platform(home, database_url=database) as platform:
        key = create_api_key(platform, project="acme")
    port = free_port()
    python = str(VLLM_PYTHON) if engine == "vllm" else sys.executable
    extra = {"vllm": ["--dtype", args.vllm_dtype, "--max-lora-rank", "8"], "llamacpp": ["--gguf-quantization", "q8_0"]}
    command = [python, "-m", "tuneforge.cli.app", "serve", *[f"{name}={path}" for name, path in models.items()],
               "--engine", engine, *extra.get(engine, []), "--threads", str(args.threads), "--max-batch",
               str(args.clients), "--adapter-cache", str(len(models) - 1), "--port", str(port), "--database-url",
               database, "--home", str(home)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(command, stdout=(home / "serve.log").open("w"), stderr=subprocess.STDOUT, env=env)
    server = SimpleNamespace(url=f"http://127.0.0.1:{port}", keys={"acme": key}, pid=process.pid)
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=600)

    def ready() -> bool:
        try:
            return process.poll() is not None or bool(client.models.list())
        except openai.APIConnectionError:
            return False

    try:
        wait_for(ready, timeout=600, every=1, what=f"tuneforge serve --engine {engine}")
        if process.poll() is not None:
            raise RuntimeError((home / "serve.log").read_text()[-3000:])
        yield server
    finally:
        process.terminate()
        process.wait(timeout=60)


def bench(engine: str, args: argparse.Namespace, *, base: Path, adapters: dict[str, str], home: Path) -> None:
    """Start a server with ``engine`` over the base and its adapters, measure, print the engine's table."""
    import openai

    loads = os.getloadavg()
    with server_process(engine, args, models={"smollm2": str(base), **adapters}, home=home / engine) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=server.keys["acme"], max_retries=0,
                               timeout=600)
        prompt_tokens = client.chat.completions.create(model="lora-0", messages=[{"role": "user", "content": PROMPT}],
                                                       max_tokens=1).usage.prompt_tokens  # warm: loads lora-0
        for name in adapters:
            ask(client, name, 2)
        single = one_client(client, "lora-0", repeats=args.repeats, max_tokens=64)
        count = args.clients * args.rounds
        alone = sequential(client, "lora-0", count=count, max_tokens=args.max_tokens)
        one = load(client, ["lora-0"], clients=args.clients, rounds=args.rounds, max_tokens=args.max_tokens)
        four = load(client, list(adapters), clients=args.clients, rounds=args.rounds, max_tokens=args.max_tokens)
    weights = {"torch": "transformers + PEFT, fp32", "llamacpp": "llama.cpp, Q8_0 GGUF base + F32 GGUF LoRA",
               "vllm": f"vLLM CPU backend, {args.vllm_dtype}, multi-LoRA"}[engine]
    if engine == "llamacpp":  # the build's kernels: AMX (make llamacpp on an AMX CPU) or not
        import llama_cpp

        weights += ", AMX build" if "AMX_INT8 = 1" in llama_cpp.llama_print_system_info().decode() else ", no AMX"
    print(f"\nSmolLM2-135M + LoRA ({engine} engine: {weights}; {args.threads} threads), prompt {prompt_tokens} tokens; "
          f"load average before/after: {loads[0]:.1f} / {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
          "(other work on the machine slows every figure); the server runs in its own process ('tuneforge serve'), "
          "the clients (openai SDK threads) in this one")
    print(f"one client, streamed (64 tokens): TTFT p50 {single['ttft_p50'] * 1000:.0f} ms, "
          f"p95 {single['ttft_p95'] * 1000:.0f} ms; decode {single['decode_tok_s']:.1f} tokens/s")
    print(f"{'':34} {'req/s':>7} {'tok/s':>7} {'p50 s':>7} {'p95 s':>7} {'x seq':>6}")
    for label, row in ((f"sequential, {count} requests", alone), (f"{args.clients} clients, 1 adapter", one),
                       (f"{args.clients} clients, 4 adapters", four)):
        print(f"{label:34} {row['req_s']:7.2f} {row['tok_s']:7.1f} {row['p50']:7.2f} {row['p95']:7.2f} "
              f"{row['req_s'] / alone['req_s']:6.2f}")
    print(f"4 adapters vs 1: p50 latency x{four['p50'] / one['p50']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10, help="Streamed requests of the one-client figures.")
    parser.add_argument("--engines", default="torch,llamacpp", help="Comma-separated: torch, llamacpp, vllm.")
    parser.add_argument("--vllm-dtype", default="bfloat16", help="--engine vllm: float32 or bfloat16.")
    args = parser.parse_args()

    import importlib.util

    import torch

    from fixtures.serving import make_lora_adapter
    from tuneforge.models.resolve import resolve_model
    from tuneforge.settings import Settings

    torch.set_num_threads(args.threads)
    home = Path(tempfile.mkdtemp(prefix="tuneforge-serving-bench-"))
    base = resolve_model("smollm2-135m", cache_dir=Settings.from_env().model_cache_dir).path
    adapters = {f"lora-{i}": str(make_lora_adapter(base, home / f"lora-{i}", seed=i, rank=8)) for i in range(4)}
    for engine in args.engines.split(","):
        if engine == "llamacpp" and importlib.util.find_spec("llama_cpp") is None:
            print("\nllamacpp engine: skipped, llama-cpp-python is not installed (pip install 'tuneforge[llamacpp]')")
            continue
        if engine == "vllm" and not VLLM_PYTHON.exists():
            print(f"\nvllm engine: skipped, {VLLM_PYTHON} is missing ('make vllm-cpu' builds it)")
            continue
        bench(engine, args, base=base, adapters=adapters, home=home)


if __name__ == "__main__":
    main()
