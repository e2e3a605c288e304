"""``tuneforge tune``: hyperparameter search (``tune SEARCH.yaml --study NAME``, ``tune best``, ``tune dashboard``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import typer
from rich.markdown import Markdown
from typer.core import TyperGroup

from tuneforge.cli.render import ProgressRenderer, make_console
from tuneforge.progress import ProgressEvent, ProgressKind
from tuneforge.settings import Settings

console = make_console()


class TuneGroup(TyperGroup):
    """``tune FILE ...`` runs a study (the ``run`` command); ``tune best`` / ``tune dashboard`` are subcommands."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


tune_app = typer.Typer(cls=TuneGroup, no_args_is_help=True, help="Hyperparameter search with Optuna: "
                       "'tuneforge tune SEARCH.yaml --study NAME', then 'tune best NAME [--train]'.")


class TrialProgress:
    """Draws a study's progress: a ``trials`` bar (done / pruned / failed, best so far) and a line per trial."""

    def __init__(self, renderer: ProgressRenderer) -> None:
        self.renderer = renderer

    def __call__(self, event: ProgressEvent) -> None:
        if event.kind is ProgressKind.STEP and event.message == "trials":
            info = event.data.get("info", "")
            if self.renderer.plain:
                console.print(f"trials {event.step}/{event.total}  {info}", highlight=False, markup=False)
                return
            name = "trials"
            if name not in self.renderer.tasks:
                self.renderer.tasks[name] = self.renderer.progress.add_task(name, total=event.total, info="")
            self.renderer.progress.update(self.renderer.tasks[name], completed=event.step, total=event.total, info=info)
            return
        self.renderer(event)


@tune_app.command("run")
def run_command(
    search: Path = typer.Argument(..., help="Search YAML: base config, space, objective, sampler, pruner, budget."),
    study: str = typer.Option(..., "--study", help="Study name in the platform's database (TUNEFORGE_DATABASE_URL)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the study: finished trials are kept, trials of a "
                                "killed run are retried."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Folder of the trial runs and the outputs "
                                          "(default: TUNEFORGE_HOME/hpo/STUDY)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch threads per trial (default: cores / "
                                          "max_concurrent)."),
) -> None:
    """Run a study on this machine: each trial in its own process, max_concurrent at once."""
    from tuneforge.cli.interrupts import StopOnSignals
    from tuneforge.hpo.space import load_search
    from tuneforge.services.hpo import tune

    concurrent = load_search(search).config.max_concurrent  # checks the file before anything starts
    threads = threads or max(1, (os.cpu_count() or 1) // concurrent)
    with StopOnSignals() as stop:
        stop.armed = True  # Ctrl-C: no new trial; running trials finish (a second Ctrl-C quits)
        with ProgressRenderer(console) as renderer:
            result, outputs = tune(search, study=study, settings=Settings.from_env(), resume=resume, output=output,
                                   threads=threads, progress=TrialProgress(renderer), stop=stop.event)
    if outputs.summary is not None:
        console.print(Markdown(outputs.summary.read_text()))
    if stop.event.is_set():
        console.print(f"[yellow]stopped[/] after the running trials: continue with --resume ({result.output})")
        raise typer.Exit(stop.exit_code)
    console.print(f"[green]done[/] in {result.seconds:.0f} s: {result.output}")


@tune_app.command("best")
def best_command(
    study: str = typer.Argument(..., help="The study."),
    train: bool = typer.Option(False, "--train", help="Train the best config to completion."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the best config here."),
    register: Optional[str] = typer.Option(None, "--register", help="With --train: register the trained model as the "
                                           "next version of this registered model name (see 'tuneforge registry')."),
) -> None:
    """Write the best config of a study (the base config with the best values); --train trains it."""
    from tuneforge.cli.registry import register_run_dir
    from tuneforge.cli.render import summary_table
    from tuneforge.registry.models import check_name
    from tuneforge.services.hpo import best

    if register is not None:
        if not train:
            raise typer.BadParameter("--register needs --train (it registers the trained model)", param_hint="--register")
        check_name(register, field="--register")  # before training, not after
    with ProgressRenderer(console) as progress:
        path, result = best(study, settings=Settings.from_env(), train=train, output=output, progress=progress)
    console.print(f"[green]best config:[/] {path}")
    if result is not None:
        console.print(summary_table(result.summary))
        console.print(f"[green]trained:[/] {result.model_path}")
        if register is not None:
            register_run_dir(result.output_dir, name=register)


@tune_app.command("outputs")
def outputs_command(study: str = typer.Argument(..., help="The study.")) -> None:
    """(Re)write a study's best.yaml, trials.csv, summary.md and plots (e.g. while workers still run it)."""
    from tuneforge.services.hpo import study_outputs

    outputs = study_outputs(study, settings=Settings.from_env())
    if outputs.summary is not None:
        console.print(Markdown(outputs.summary.read_text()))


@tune_app.command("dashboard")
def dashboard_command(
    study: str = typer.Option(..., "--study", help="The study to open."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8080, help="Port."),
) -> None:
    """Open optuna-dashboard on the study's storage (needs the hpo-dashboard extra: optuna-dashboard)."""
    from tuneforge.services.hpo import dashboard_storage

    storage = dashboard_storage(study, settings=Settings.from_env())
    import optuna_dashboard

    console.print(f"optuna-dashboard for study {study} on http://{host}:{port}")
    optuna_dashboard.run_server(storage, host=host, port=port)
