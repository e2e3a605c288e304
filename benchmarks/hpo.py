"""Does a 12-trial study beat the default config? And do two workers sharing a study finish it faster?

1. Quality: on the generated profile-extraction task (train / eval / test splits), the default training config
   under a small fixed budget (``max_steps: 30``) is compared with the best trial of a 12-trial TPE study with
   median pruning (objective: eval loss on the eval split). Both runs are then scored on the held-out test
   split with the evaluation module (perplexity of the reference answers; lower is better).
2. Workers: the same small study (random sampler, no pruning) run by one process, then by two processes that
   share it (one thread per trial each), on the database of ``--database-url`` (PostgreSQL for the issue's figure;
   a SQLite file by default).

    .venv/bin/python benchmarks/hpo.py                               # a tiny random Llama (built here)
    .venv/bin/python benchmarks/hpo.py --model smollm2-135m --trials 12 --database-url postgresql://...
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[1]


def write_task(folder: Path, model: str, steps: int) -> Path:
    """The task's splits as JSONL and the default config (its ``train`` settings are tuneforge's defaults)."""
    from tuneforge.evaluation.tasks import profile_extraction

    splits = profile_extraction(n_train=240, n_eval=40, n_test=60, seed=0)
    for name in ("train", "eval", "test"):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in getattr(splits, name)))
    config = {"model": model, "data": {"train": str(folder / "train.jsonl"), "eval": str(folder / "eval.jsonl")},
              "train": {"max_steps": steps, "eval_steps": 10, "save_steps": 10_000, "max_seq_length": 128},
              "output_dir": str(folder / "default")}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder / "config.yaml"


def search_file(folder: Path, *, trials: int, sampler: str, pruner: str, concurrent: int) -> Path:
    search = {"base": "config.yaml", "objective": [{"metric": "eval_loss"}], "sampler": sampler, "pruner": pruner,
              "n_trials": trials, "max_concurrent": concurrent, "seed": 0,
              "space": {"train.learning_rate": {"type": "float", "low": 1e-5, "high": 5e-2, "log": True},
                        "method.r": {"type": "categorical", "choices": [4, 8, 16, 32]},
                        "method.alpha": {"type": "categorical", "choices": [8, 16, 32, 64]},
                        "train.warmup": {"type": "categorical", "choices": [0.0, 0.1]}}}
    path = folder / f"search-{sampler}-{pruner}.yaml"
    path.write_text(yaml.safe_dump(search))
    return path


def test_perplexity(run_dir: Path, test: Path, settings) -> float:
    from tuneforge.evaluation.runner import evaluate_loaded_tasks
    from tuneforge.evaluation.suites import SuiteConfig, TaskConfig, load_task

    task = TaskConfig(data=str(test), metrics=["perplexity"])
    report = evaluate_loaded_tasks(str(run_dir), [load_task(task)], SuiteConfig(tasks=[task], latency_samples=0),
                                   settings=settings)
    return report.tasks[0].metrics["perplexity"]


def quality(folder: Path, args, settings) -> None:
    from tuneforge.config import TrainConfig, load_config
    from tuneforge.hpo.study import load_study
    from tuneforge.services.hpo import tune
    from tuneforge.training.run import run_training

    base = load_config(folder / "config.yaml", TrainConfig)
    started = time.perf_counter()
    run_training(base, settings=settings, overwrite=True)
    default_seconds = time.perf_counter() - started
    search = search_file(folder, trials=args.trials, sampler="tpe", pruner="median", concurrent=args.concurrent)
    result, _ = tune(search, study="bench-quality", settings=settings, output=folder / "study", threads=1)
    study = load_study("bench-quality", settings=settings)
    best_run = Path(study.best_trial.user_attrs["run_dir"])
    default_ppl = test_perplexity(folder / "default", folder / "test.jsonl", settings)
    best_ppl = test_perplexity(best_run, folder / "test.jsonl", settings)
    print(f"default config ({base.train.max_steps} steps, lr {base.train.learning_rate:g}, r {base.method.r}): "
          f"test perplexity {default_ppl:.3f}  ({default_seconds:.0f} s)")
    print(f"best of {args.trials} TPE trials (trial {study.best_trial.number}, {study.best_params}): "
          f"test perplexity {best_ppl:.3f}")
    print(f"relative improvement {(default_ppl - best_ppl) / default_ppl:.1%}; pruned trials {result.counts.pruned}; "
          f"study wall time {result.seconds:.0f} s")


def workers(folder: Path, args, settings) -> None:
    from tuneforge.hpo.space import load_search
    from tuneforge.hpo.study import create_study

    search = search_file(folder, trials=args.worker_trials, sampler="random", pruner="none", concurrent=1)
    timings = {}
    for count in (1, 2):
        name = f"bench-workers-{count}-{int(time.time())}"
        create_study(load_search(search), name=name, settings=settings, output=folder / name)
        started = time.perf_counter()
        processes = [subprocess.Popen([sys.executable, __file__, "--worker", name, "--search", str(search),
                                       "--home", settings.home, "--database-url", settings.database_url])
                     for _ in range(count)]
        for process in processes:
            process.wait()
        timings[count] = time.perf_counter() - started
        print(f"{count} worker(s): {args.worker_trials} trials in {timings[count]:.0f} s")
    print(f"two workers / one: {timings[2] / timings[1]:.2f}x the wall time")


def worker(args) -> None:
    from tuneforge.hpo.local import run_local_study
    from tuneforge.hpo.space import load_search
    from tuneforge.settings import Settings

    settings = Settings(home=args.home, database_url=args.database_url)
    run_local_study(load_search(args.search), name=args.worker, settings=settings, resume=True, threads=1,
                    output=Path(args.home) / args.worker)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="Model reference (default: a tiny random Llama built here).")
    parser.add_argument("--steps", type=int, default=30, help="max_steps of the default config and of each trial.")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--concurrent", type=int, default=1, help="max_concurrent of the quality study.")
    parser.add_argument("--worker-trials", type=int, default=6)
    parser.add_argument("--database-url", default="", help="Database of the studies (default: SQLite in a temp home).")
    parser.add_argument("--postgres", action="store_true", help="Start a throwaway PostgreSQL cluster for the studies "
                        "(needs initdb; tests/fixtures/postgres.py).")
    parser.add_argument("--skip", choices=["quality", "workers"], action="append", default=[])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--search", help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    from tuneforge.settings import Settings, quiet_environment

    quiet_environment()
    with tempfile.TemporaryDirectory(prefix="tuneforge-hpo-bench-") as tmp, _database(args) as url:
        folder = Path(tmp)
        model = args.model or str(_tiny_model(folder / "tiny"))
        write_task(folder, model, args.steps)
        settings = Settings(home=str(folder / "home"), database_url=url)
        print(f"studies in {'PostgreSQL' if url.startswith('postgres') else 'SQLite'}; model {model}")
        if "quality" not in args.skip:
            quality(folder, args, settings)
        if "workers" not in args.skip:
            workers(folder, args, settings)


@contextlib.contextmanager
def _database(args):
    if not args.postgres:
        yield args.database_url
        return
    sys.path.insert(0, str(ROOT / "tests"))
    from fixtures.postgres import postgres_cluster

    with postgres_cluster() as url:
        yield url


def _tiny_model(path: Path) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from fixtures.tiny import build_tiny_llama

    return build_tiny_llama(path, layers=2, hidden=64)


if __name__ == "__main__":
    main()
