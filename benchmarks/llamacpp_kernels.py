"""llama.cpp kernel speed of the installed build on SmolLM2-135M GGUF exports: what the CPU features of the build
(``llama_print_system_info()``) buy for the llamacpp serving engine.

For each quantization (Q8_0, Q4_0 by default; made once with tuneforge's own GGUF writer into --cache), through the
serving engine's own ``BatchContext`` (flash attention, a KV stream per sequence, n_ubatch 512):

- first: the first prefill after the model loads (weight repacking and allocation included);
- prefill: a --prompt-tokens prompt on a cleared sequence, median of --repeats (the TTFT of a request with no
  prefix in the cache, less sampling and HTTP), and best: the fastest of them (on a shared machine);
- decode: one token of one sequence; step: one token of each of --slots sequences in one batch (median).

Each is given in wall-clock milliseconds and in CPU milliseconds of the process (all threads): on a machine shared
with other work, the CPU time of a 1-thread run is the kernels' cost, which the wall-clock time is not.

``--adapters N`` measures the --slots step with LoRA adapters instead (random, rank 8 on q/v/o, as
benchmarks/serving.py's): no adapter; one adapter on the context (llama.cpp's own way); a per-sequence stack
of one adapter, and of N with the sequences spread over them (scripts/llamacpp_seq_lora.patch); and one adapter's
share of the sequences (slots / N) with that adapter on the context, N of which are what a step of each adapter
in turn costs without the patch.

    PYTHONPATH=src python benchmarks/llamacpp_kernels.py [--threads 2] [--quantizations q8_0,q4_0]
                                                       [--gguf FILE ...] [--cache DIR]

Compare builds by pointing Python at another copy of the ``llama_cpp`` package (its ``lib/`` holding the other
build's libraries) first on ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TEXT = ("Extract name, age, city and job from the text as key=value pairs separated by semicolons. Text: Maria "
        "Lopez is a 34 year old teacher who has lived in Lisbon since she finished her studies; before that she "
        "spent six years in Porto and two in Madrid, where she taught history and geography at a small secondary "
        "school near the river, and she now also writes a weekly column about education. ") * 4


def make_gguf(quantization: str, cache: Path) -> Path:
    """SmolLM2-135M as a GGUF file of ``quantization``, written once into ``cache``."""
    path = cache / f"smollm2-135m.{quantization}.gguf"
    if path.exists():
        return path
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneforge.compression.export.gguf_writer import write_gguf
    from tuneforge.models.resolve import resolve_model
    from tuneforge.settings import Settings

    folder = resolve_model("smollm2-135m", cache_dir=Settings.from_env().model_cache_dir).path
    model = AutoModelForCausalLM.from_pretrained(folder)
    partial = path.with_suffix(".partial")
    write_gguf(model, AutoTokenizer.from_pretrained(folder), Path(folder), partial, quantization=quantization)
    partial.rename(path)
    return path


def tokenize(model, count: int) -> list[int]:
    """The first ``count`` tokens of TEXT in the model's vocabulary."""
    import ctypes

    from llama_cpp import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(model)
    data = TEXT.encode()
    buffer = (llama_cpp.llama_token * (len(data) + 8))()
    n = llama_cpp.llama_tokenize(vocab, data, len(data), buffer, len(buffer), True, False)
    if n < count:
        raise SystemExit(f"--prompt-tokens {count}: the text has only {n} tokens")
    return list(ctypes.cast(buffer, ctypes.POINTER(llama_cpp.llama_token))[:count])


def timed(function) -> tuple[float, float]:
    """Milliseconds ``function()`` took: wall-clock and CPU time of this process (all its threads)."""
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    return (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000


def medians(runs: list[tuple[float, float]]) -> tuple[float, float]:
    """Median wall-clock and median CPU milliseconds of ``runs``."""
    return statistics.median(wall for wall, _ in runs), statistics.median(cpu for _, cpu in runs)


def measure(path: Path, args: argparse.Namespace) -> dict[str, float]:
    """Wall-clock and CPU milliseconds of a first prefill, a prefill, a decode step and a --slots step of ``path``."""
    from llama_cpp import llama_cpp

    from tuneforge.serving.llamacpp_batch import BatchContext, load_model

    model = load_model(path)
    context = BatchContext(model, slots=args.slots, n_ctx=512, threads=args.threads, threads_batch=args.threads)
    try:
        prompt = tokenize(model, args.prompt_tokens)

        def prefill(seq: int = 0, tokens: list[int] = prompt) -> None:
            llama_cpp.llama_memory_seq_rm(context.memory, seq, 0, -1)
            context.decode([(seq, tokens, 0, True)])

        r = {"first": timed(prefill)[0]}
        prefills = [timed(prefill) for _ in range(args.repeats)]
        r["prefill"], r["prefill_cpu"] = medians(prefills)
        r["best"] = min(wall for wall, _ in prefills)
        r["decode"], r["decode_cpu"] = medians([timed(lambda at=at: context.decode([(0, [prompt[at % 50]],
                                                                                      len(prompt) + at, True)]))
                                                for at in range(args.decode_steps)])
        short = prompt[:16]
        for seq in range(args.slots):
            prefill(seq, short)
        r["step"], r["step_cpu"] = medians([timed(lambda at=at: context.decode(
            [(seq, [short[at % 16]], len(short) + at, True) for seq in range(args.slots)]))
            for at in range(args.decode_steps)])
        return r
    finally:
        context.close()
        llama_cpp.llama_model_free(model)


def measure_adapters(path: Path, args: argparse.Namespace) -> list[tuple[str, tuple[float, float]]]:
    """Median wall-clock and CPU milliseconds of a --slots step of ``path`` with --adapters adapters, each way."""
    from llama_cpp import llama_cpp
    from transformers import AutoConfig

    from fixtures.serving import make_lora_adapter
    from tuneforge.models.resolve import resolve_model
    from tuneforge.serving.llamacpp_adapters import GgufAdapters, SequenceAdapters
    from tuneforge.serving.llamacpp_batch import BatchContext, load_model
    from tuneforge.settings import Settings

    folder = resolve_model("smollm2-135m", cache_dir=Settings.from_env().model_cache_dir).path
    config = AutoConfig.from_pretrained(folder)
    adapters = [args.cache / f"lora-{i}" for i in range(args.adapters)]
    for i, adapter in enumerate(adapters):
        if not adapter.exists():
            make_lora_adapter(Path(folder), adapter, seed=i, rank=8)
    model = load_model(path)
    context = BatchContext(model, slots=args.slots, n_ctx=512, threads=args.threads, threads_batch=args.threads)
    work = Path(tempfile.mkdtemp(dir=args.cache))
    prompt = tokenize(model, 16)

    def steps(seqs: list[int]) -> tuple[float, float]:
        for seq in seqs:
            llama_cpp.llama_memory_seq_rm(context.memory, seq, 0, -1)
            context.decode([(seq, prompt, 0, True)])
        return medians([timed(lambda at=at: context.decode([(seq, [prompt[at % 16]], 16 + at, True) for seq in seqs]))
                        for at in range(args.decode_steps)])

    everyone = list(range(args.slots))
    rows = [("no adapter", steps(everyone))]
    single = GgufAdapters(model, context.ctx, config, capacity=args.adapters, workdir=work)
    stack = SequenceAdapters(model, context.ctx, config, capacity=args.adapters, workdir=work)
    try:
        single.use(adapters[0])
        rows.append(("1 adapter on the context", steps(everyone)))
        rows.append((f"1 adapter, {args.slots // args.adapters} sequences",
                     steps(everyone[:args.slots // args.adapters])))
        single.clear()
        stack.load(adapters[0])
        for seq in everyone:
            stack.assign(seq, adapters[0])
        rows.append(("stack of 1 (per-sequence)", steps(everyone)))
        for adapter in adapters[1:]:
            stack.load(adapter)
        for seq in everyone:
            stack.assign(seq, adapters[seq % args.adapters])
        rows.append((f"stack of {args.adapters}, mixed", steps(everyone)))
        return rows
    finally:
        stack.clear()
        single.clear()
        context.close()
        llama_cpp.llama_model_free(model)


def table(rows: list[tuple[str, dict[str, float]]], args: argparse.Namespace) -> None:
    """Print the figures of ``rows`` (file name, measure()'s result)."""
    print(f"{args.threads} threads, prompt {args.prompt_tokens} tokens, step = one token of each of {args.slots} "
          "sequences; milliseconds (median), wall-clock and CPU time (all threads; the cost on a shared machine)")
    print(f"{'model':<26} {'first':>7} {'prefill':>8} {'best':>7} {'cpu':>7} {'cpu/tok':>7} {'decode':>7} "
          f"{'cpu':>6} {'step':>7} {'cpu':>7} {'step/1':>6}")
    for name, r in rows:
        print(f"{name:<26} {r['first']:7.1f} {r['prefill']:8.1f} {r['best']:7.1f} {r['prefill_cpu']:7.1f} "
              f"{r['prefill_cpu'] / args.prompt_tokens:7.2f} {r['decode']:7.2f} {r['decode_cpu']:6.2f} "
              f"{r['step']:7.2f} {r['step_cpu']:7.2f} {r['step_cpu'] / r['decode_cpu']:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quantizations", default="q8_0,q4_0")
    parser.add_argument("--gguf", type=Path, nargs="*", default=[], help="GGUF files instead of SmolLM2 exports")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "tuneforge-llamacpp-kernels")
    parser.add_argument("--prompt-tokens", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--decode-steps", type=int, default=16)
    parser.add_argument("--slots", type=int, default=16)
    parser.add_argument("--adapters", type=int, default=0, help="measure the --slots step with this many adapters")
    args = parser.parse_args()
    if not 0 <= args.adapters <= args.slots:
        parser.error(f"--adapters {args.adapters}: give 0 (no adapters) to --slots ({args.slots})")
    root = Path(__file__).resolve().parents[1]
    sys.path[:0] = [str(root / "src"), str(root / "tests")]
    import llama_cpp

    args.cache.mkdir(parents=True, exist_ok=True)
    files = args.gguf or [make_gguf(q, args.cache) for q in args.quantizations.split(",")]
    print(f"llama.cpp from {Path(llama_cpp.__file__).parent}: {llama_cpp.llama_print_system_info().decode().strip()}")
    if args.adapters:
        for path in files:
            print(f"{path.name}: one token of each of {args.slots} sequences, {args.threads} threads, ms (median), "
                  "wall-clock / CPU")
            for label, (wall, cpu) in measure_adapters(path, args):
                print(f"  {label:<32} {wall:7.2f} {cpu:7.2f}")
        return
    table([(path.name, measure(path, args)) for path in files], args)


if __name__ == "__main__":
    main()
