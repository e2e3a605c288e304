"""The tuneforge command line: parse, call services, render with rich."""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tuneforge.cli import compression, evaluation, platform, registry, runs, serving
from tuneforge.cli import hpo as hpo_cli
from tuneforge.cli import ab as ab_cli
from tuneforge.cli import update as update_cli
from tuneforge.cli.data import data_app
from tuneforge.cli.interrupts import StopOnSignals
from tuneforge.cli.render import ProgressRenderer, make_console, summary_table
from tuneforge.config import METHODS
from tuneforge.errors import Interrupted, TuneforgeError
from tuneforge.settings import Settings, quiet_environment, quiet_library_logs

app = typer.Typer(help="Fine-tune, evaluate, compress and serve open models.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
config_app = typer.Typer(help="Check configs and print examples.", no_args_is_help=True)
app.add_typer(config_app, name="config")
console = make_console()
_state = {"debug": False}
SET_OPTION = typer.Option(None, "--set", metavar="KEY=VALUE",
                          help="Override a config value, e.g. --set train.learning_rate=1e-4 (YAML value; repeatable).")


@app.callback()
def _options(debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors.")) -> None:
    _state["debug"] = debug
    quiet_environment()  # offline; tuneforge draws its own progress, so the libraries' bars stay off
    if not debug:
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
        quiet_library_logs()  # optional kernels that bitsandbytes, kernels and torchao cannot load here


@app.command()
def train(
    config: Path = typer.Argument(..., help="YAML config file."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint of the run."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a run that output_dir already holds."),
    register: Optional[str] = typer.Option(None, "--register", help="Register the trained model as the next version "
                                           "of this registered model name (see 'tuneforge registry')."),
    overrides: Optional[list[str]] = SET_OPTION,
    nproc: int = typer.Option(1, "--nproc", help="Processes on this machine (one per GPU); above 1, training runs "
                              "under torchrun with train.distributed (ddp, fsdp, deepspeed_zero2/3)."),
    nnodes: int = typer.Option(1, "--nnodes", help="Machines in the run (each runs this same command)."),
    node_rank: int = typer.Option(0, "--node-rank", help="This machine's index, 0 to --nnodes - 1 (0 writes the run)."),
    master: Optional[str] = typer.Option(None, "--master", help="ADDR:PORT of machine 0 (needed with --nnodes > 1)."),
) -> None:
    """Fine-tune a model as CONFIG says. Ctrl-C (or SIGTERM) saves a checkpoint after the current step."""
    from tuneforge.registry.models import check_name
    from tuneforge.services.launch import LaunchPlan
    from tuneforge.services.training import train as train_service

    if register is not None:
        check_name(register, field="--register")  # before training, not after
    train_config = registry.with_registered_base(config, overrides=overrides or ())  # model: name / name:3 / name@alias of the registry
    plan = LaunchPlan(nproc=nproc, nnodes=nnodes, node_rank=node_rank, master=master)
    if plan.distributed and "LOCAL_RANK" not in os.environ:  # not yet under the launcher: start it
        _launch(plan, config=config, resume=resume, overwrite=overwrite, overrides=overrides or ())
        if register is not None and node_rank == 0:
            registry.register_run_dir(Path(train_config.output_dir), name=register)
        return
    main_process = os.environ.get("RANK", "0") == "0"  # the other ranks stay quiet
    with StopOnSignals() as stop:
        try:
            with ProgressRenderer(console if main_process else make_console(quiet=True)) as progress:
                result = train_service(train_config, settings=Settings.from_env(), resume=resume, overwrite=overwrite,
                                       progress=stop.arming(progress), stop=stop.event, command=_command_line(),
                                       config_file=config, resolve_dataset=_dataset_resolver())
        except Interrupted as exc:
            kept = f" ({exc.checkpoint} kept)" if exc.checkpoint else ""
            if main_process:
                Console(stderr=True, soft_wrap=True).print(f"[yellow]{escape(exc.message)}[/]{escape(kept)}",
                                                           highlight=False)
            sys.exit(stop.exit_code)
    if not main_process:
        return
    console.print(summary_table(result.summary))
    console.print(f"[green]done:[/] {result.model_path}")
    if register is not None:
        registry.register_run_dir(result.output_dir, name=register)


def _launch(plan: Any, *, config: Path, resume: bool, overwrite: bool, overrides: list[str]) -> None:
    """Re-run this ``train`` under torchrun and wait. The launcher has its own session, so that Ctrl-C reaches the
    processes once, through it: each is passed on (SIGINT, SIGTERM); the processes agree to stop after the same
    step and save a checkpoint. Exits with the launcher's code when it fails."""
    import signal
    import subprocess

    from tuneforge.services.launch import launch_command, train_arguments

    command = launch_command(plan, cli_args=train_arguments(str(config), resume=resume, overwrite=overwrite,
                                                            overrides=overrides))
    console.print(f"launching {plan.nproc} process(es) on machine {plan.node_rank} of {plan.nnodes}: "
                  f"{escape(' '.join(command))}", highlight=False)
    launcher = subprocess.Popen(command, start_new_session=True)
    previous = {sig: signal.signal(sig, lambda signum, _: launcher.send_signal(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = launcher.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if code != 0:
        Console(stderr=True, soft_wrap=True).print(f"[red]error:[/] the launcher ended with exit code {code}",
                                                   highlight=False)
        sys.exit(code)


def _dataset_resolver() -> Any:
    """Data entries ``{dataset: name:version}`` resolve in the project TUNEFORGE_PROJECT (default ``default``)."""
    from tuneforge.services.data_reports import dataset_resolver

    return dataset_resolver(Settings.from_env(), project=registry.cli_project(None))


@app.command()
def quickstart(
    workdir: Path = typer.Option(Path("quickstart"), help="Folder for the data, the run and the report."),
    model: str = typer.Option("smollm2-135m", help="Model to tune."),
) -> None:
    """Generate a task, LoRA-tune SmolLM2-135M on it, and show accuracy before and after."""
    from tuneforge.services.quickstart import run_quickstart

    with ProgressRenderer(console) as progress:
        result = run_quickstart(settings=Settings.from_env(), workdir=workdir, model=model, progress=progress)
    table = Table(title="quickstart: profile extraction, exact match on the test split")
    for column in ("model", "exact match", "test examples"):
        table.add_column(column)
    table.add_row(f"{model} (base)", f"{result.base_accuracy:.1%}", str(result.test_examples))
    table.add_row(f"{model} + LoRA", f"{result.tuned_accuracy:.1%}", str(result.test_examples))
    console.print(table)
    for sample in result.samples[:2]:
        console.print(f"  expected: {sample['reference']}\n  base:     {sample['base']}\n  tuned:    {sample['tuned']}")
    console.print(
        f"training {result.train_seconds:.0f} s at {result.tokens_per_second:.0f} tokens/s; "
        f"total {result.wall_seconds:.0f} s\nadapter: [bold]{result.adapter}[/]\n"
        f"try it:  tuneforge generate {result.run_dir} --prompt \"...\""
    )


@app.command()
def models() -> None:
    """List the builtin models and the supported architectures."""
    from tuneforge.services.models import model_table

    listing = model_table()
    builtins = Table(title="builtin models")
    builtins.add_column("alias")
    builtins.add_column("model")
    for b in listing["builtins"]:
        builtins.add_row(b["alias"], b["description"])
    archs = Table(title="architectures")
    for column in ("model_type", "family", "kind", "attention", "position", "LoRA targets (auto)"):
        archs.add_column(column)
    for a in listing["architectures"]:
        archs.add_row(a["model_type"], a["family"], a["kind"], a["attention"], a["position"], ", ".join(a["lora_targets"]))
    console.print(builtins)
    console.print(archs)


@app.command()
def merge(
    run_dir: Path = typer.Argument(..., help="A run directory with an adapter."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for the merged model."),
) -> None:
    """Merge a run's adapter into its base model; the result loads with plain transformers."""
    from tuneforge.services.training import merge_run

    with ProgressRenderer(console) as progress:
        path = merge_run(run_dir, output=output, settings=Settings.from_env(), progress=progress)
    console.print(f"[green]merged model:[/] {path}")


@app.command("merge-adapters")
def merge_adapters(
    adapters: list[str] = typer.Argument(..., help="Two or more run or adapter directories of one base model."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for the combined adapter."),
    method: str = typer.Option("task_arithmetic", help="task_arithmetic, linear, svd, ties, dare_linear, dare_ties."),
    weights: Optional[list[float]] = typer.Option(None, "--weight", "-w", help="One per adapter, in order."),
    density: Optional[float] = typer.Option(None, help="Fraction kept by ties / dare (default 0.5)."),
) -> None:
    """Combine LoRA adapters of one base model into one adapter."""
    from tuneforge.config import validate_config
    from tuneforge.services.adapters import MergeAdaptersConfig
    from tuneforge.services.adapters import merge_adapters as merge_service

    config = validate_config(
        {"adapters": adapters, "output": str(output), "method": method, "weights": weights or None, "density": density},
        MergeAdaptersConfig,
    )
    with ProgressRenderer(console) as progress:
        path = merge_service(config, settings=Settings.from_env(), progress=progress)
    console.print(f"[green]combined adapter:[/] {path}")


@app.command()
def generate(
    model: str = typer.Argument(..., help="Model reference, run directory, adapter directory or registered version "
                                "(name, name:3, name@alias)."),
    prompt: Optional[str] = typer.Option(None, "--prompt", "-p", help="The user message."),
    chat: bool = typer.Option(False, "--chat", help="Chat interactively (an empty line ends)."),
    system: Optional[str] = typer.Option(None, "--system", "-s", help="A system message before the conversation."),
    temperature: float = typer.Option(0.0, "--temperature", "-t", help="0: greedy (deterministic); above 0: sample."),
    top_p: float = typer.Option(1.0, "--top-p", help="Nucleus sampling threshold (with --temperature > 0)."),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", help="Longest answer, in tokens."),
) -> None:
    """Answer a prompt, or chat; the answer is printed as the model writes it."""
    from tuneforge.services.models import Chat, Sampling

    if not chat and prompt is None:
        raise TuneforgeError("give --prompt TEXT or --chat", hint="tuneforge generate MODEL --prompt 'Hello'")
    sampling = Sampling(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, system=system)
    path = registry.resolve_cli_model(model).path  # a registered version: name, name:3, name@alias
    partner = Chat(path, settings=Settings.from_env(), sampling=sampling)  # loads once, on first use
    if not chat:
        _stream(partner.stream([{"role": "user", "content": prompt}]))
        return
    messages: list[dict[str, str]] = []
    while (line := console.input("[bold]you>[/] ").strip()):
        messages.append({"role": "user", "content": line})
        console.print("[bold]model>[/] ", end="", highlight=False)
        messages.append({"role": "assistant", "content": _stream(partner.stream(messages)).strip()})


def _stream(pieces: Any) -> str:
    """Write text pieces as they come (plain text, no markup), then a newline; return the whole text."""
    parts = []
    for piece in pieces:
        sys.stdout.write(piece)
        sys.stdout.flush()
        parts.append(piece)
    sys.stdout.write("\n")
    sys.stdout.flush()
    return "".join(parts)


app.command("eval")(evaluation.eval_command)
app.command("compare")(evaluation.compare_command)
app.command("server")(platform.server)
app.command("worker")(platform.worker)
app.add_typer(platform.keys_app, name="keys")
app.add_typer(runs.runs_app, name="runs")
app.add_typer(platform.admin_app, name="admin")
app.command("compress")(compression.compress_command)
app.add_typer(registry.registry_app, name="registry")
app.add_typer(data_app, name="data")
app.add_typer(hpo_cli.tune_app, name="tune")
app.command("serve")(serving.serve)
app.add_typer(ab_cli.ab_app, name="ab")
app.command("feedback")(ab_cli.feedback_command)
app.command("update")(update_cli.update_command)  # incremental updates (cli/update.py)


@config_app.command("validate")
def config_validate(
    file: Path = typer.Argument(..., help="YAML config file."),
    check_data: bool = typer.Option(True, "--check-data/--no-check-data",
                                    help="Also read and tokenize the data files (skip with --no-check-data)."),
    overrides: Optional[list[str]] = SET_OPTION,
) -> None:
    """Check a config, its model (config and tokenizer, no weights) and its data; print it with every default."""
    from tuneforge.services.training import check_config

    config, checks = check_config(file, settings=Settings.from_env(), check_data=check_data,
                                  overrides=overrides or ())
    console.print_json(json.dumps(config.model_dump(mode="json")))
    for line in checks:
        console.print(f"[green]ok[/] {escape(line)}", highlight=False)
    skipped = "" if check_data else " (data not checked)"
    console.print(f"[green]{escape(str(file))} is valid[/]{skipped}")


@config_app.command("template")
def config_template(name: str = typer.Argument("lora", help=f"The method: {METHODS.listing()}.")) -> None:
    """Print a commented example config for a method."""
    from tuneforge.services.training import template

    sys.stdout.write(template(name))


def _command_line() -> list[str]:
    """The command as typed (``tuneforge train ...``), for the run's provenance."""
    return ["tuneforge", *sys.argv[1:]]


def _interrupted() -> None:
    """Ctrl-C outside a training step (or a second one): say what is kept, exit 130 as shells do."""
    Console(stderr=True, soft_wrap=True).print("[red]interrupted[/]: checkpoints written so far are kept; "
                                               "resume with --resume")
    sys.exit(130)


def main() -> None:
    """Entry point: run the app, turning tuneforge errors into 'error:' / 'hint:' lines and exit 1."""
    try:
        app(standalone_mode=False)
    except TuneforgeError as exc:
        if os.environ.get("RANK", "0") != "0":  # under the launcher: rank 0 says it (the same error) once
            sys.exit(1)
        if _state["debug"]:
            console.print_exception()
        err = Console(stderr=True, soft_wrap=True)
        err.print(f"[red]error:[/] {escape(exc.message)}", highlight=False)
        if exc.hint:
            err.print(f"[yellow]hint:[/] {escape(exc.hint)}", highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        _interrupted()
    except Exception as exc:  # click usage errors and the unexpected
        if isinstance(exc.__cause__, KeyboardInterrupt):  # click turns Ctrl-C into its Abort
            _interrupted()
        if type(exc).__module__.endswith("click.exceptions"):  # click's, or the copy typer vendors (typer._click)
            if hasattr(exc, "show"):  # usage errors: the usage line and what is wrong
                exc.show()
            sys.exit(getattr(exc, "exit_code", 1))
        if _state["debug"]:
            raise
        Console(stderr=True, soft_wrap=True).print(f"[red]error:[/] {type(exc).__name__}: {escape(str(exc))}", highlight=False)
        Console(stderr=True, soft_wrap=True).print("[yellow]hint:[/] run again with --debug for the traceback")
        sys.exit(1)


if __name__ == "__main__":
    main()
