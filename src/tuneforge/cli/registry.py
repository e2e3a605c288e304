"""``tuneforge registry``: versions, aliases, lineage and retention of registered models; and the resolution of
``name`` / ``name:3`` / ``name@alias`` for the model arguments of train, eval, compare and compress.

The CLI works on the database of ``TUNEFORGE_DATABASE_URL`` (default: the SQLite file under TUNEFORGE_HOME),
in the project ``TUNEFORGE_PROJECT`` (default ``default``) unless ``--project`` says another.
"""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from tuneforge.cli.render import make_console
from tuneforge.settings import Settings

registry_app = typer.Typer(help="Registered models: versions, aliases, lineage, retention.", no_args_is_help=True)
console = make_console()
notes = make_console(stderr=True)  # what a model argument resolved to: not mixed into a command's output
DEFAULT_PROJECT = "default"
PROJECT = typer.Option(None, "--project", help="Project of the registry (default: TUNEFORGE_PROJECT, else 'default').")
JSON = typer.Option(False, "--json", help="Print JSON instead of tables.")


def cli_project(project: Optional[str] = None) -> str:
    """The project CLI commands act in."""
    return project or os.environ.get("TUNEFORGE_PROJECT") or DEFAULT_PROJECT


def cli_actor() -> str:
    """Who a CLI action is recorded as."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@contextmanager
def cli_platform() -> Iterator[Any]:
    """The platform (store, artifacts) of the CLI's settings, closed afterwards."""
    from tuneforge.services.platform import open_platform

    platform = open_platform(Settings.from_env())
    try:
        yield platform
    finally:
        platform.close()


@dataclass(frozen=True)
class CliModel:
    """A model argument after resolution: what to load, and the registered version it was (if any)."""

    path: str
    version: Any = None


def resolve_cli_model(reference: str) -> CliModel:
    """``name`` / ``name:3`` / ``name@alias`` -> the version's artifact; anything else (an existing path, a
    builtin alias, a hub id) is passed on unchanged. A local path wins over a registered bare name."""
    from tuneforge.registry.models import parse_ref

    parsed = parse_ref(reference)
    if parsed is None or (not parsed.explicit and Path(reference).exists()):
        return CliModel(reference)
    settings = Settings.from_env()
    sqlite_file = settings.database_url.split(":///", 1)[-1] if settings.database_url.startswith("sqlite") else None
    if not parsed.explicit and sqlite_file and not Path(sqlite_file).exists():
        return CliModel(reference)  # no database yet: nothing is registered
    from tuneforge.services.registry import loadable_path, resolve_model_version

    with cli_platform() as platform:
        version = resolve_model_version(platform, reference, project=cli_project())
    if version is None:
        return CliModel(reference)
    notes.print(f"[cyan]•[/] {reference} is {version.ref} ({version.kind}): {version.artifact_path}", highlight=False)
    return CliModel(loadable_path(version), version)


def attach_cli_scores(model: CliModel, report: Any) -> None:
    """Attach an evaluation report's scores to the version that was evaluated (nothing for other models)."""
    if model.version is None:
        return
    from tuneforge.services.registry import attach_scores

    scores = {t.name: {"examples": t.examples, **t.metrics} for t in report.tasks}
    with cli_platform() as platform:
        attach_scores(platform, model.version, scores)
    console.print(f"scores attached to {model.version.ref}")


def register_cli_compression(model: CliModel, output: Path, report: Any) -> None:
    """Register a compressed output as a version linked to the registered version it came from."""
    if model.version is None:
        return
    from tuneforge.services.registry import register_compressed

    with cli_platform() as platform:
        version = register_compressed(platform, parent=model.version, output=output,
                                      report=report.model_dump(mode="json"), created_by=cli_actor())
    console.print(f"[green]registered[/] {version.ref} ({version.kind}, from {model.version.ref})")


def register_run_dir(run_dir: Path, *, name: str, project: Optional[str] = None) -> Any:
    """Register a run directory (``train --register`` and ``registry register``); prints the new version."""
    from tuneforge.services.registry import register

    with cli_platform() as platform:
        version = register(platform, run_dir, project=cli_project(project), name=name, created_by=cli_actor())
    console.print(f"[green]registered[/] {version.ref} ({version.kind}, {version.size_bytes / 2**20:.1f} MiB, "
                  f"sha256 {version.artifact_sha256[:12]})")
    return version


def _print(data: Any) -> None:
    console.print_json(json.dumps(data, default=str))


@registry_app.command("list")
def list_command(project: Optional[str] = PROJECT, as_json: bool = JSON) -> None:
    """List registered models with their newest version and aliases."""
    from tuneforge.services.registry import list_registered

    with cli_platform() as platform:
        models = list_registered(platform, project=cli_project(project))
    if as_json:
        return _print(models)
    table = Table(title=f"registered models ({cli_project(project)})")
    for column in ("name", "latest", "versions", "stored", "aliases"):
        table.add_column(column)
    for m in models:
        aliases = ", ".join(f"{a}->{v}" for a, v in m["aliases"].items())
        table.add_row(m["name"], str(m["latest_version"]), str(m["versions"]), str(m["stored"]), aliases)
    console.print(table)


@registry_app.command("show")
def show_command(ref: str = typer.Argument(..., help="NAME, NAME:VERSION or NAME@ALIAS."),
                 project: Optional[str] = PROJECT, as_json: bool = JSON) -> None:
    """Show a model's versions, aliases and alias moves, or one version."""
    from tuneforge.services.registry import show

    with cli_platform() as platform:
        data = show(platform, ref, project=cli_project(project))
    if as_json or "versions" not in data:
        return _print(data)
    table = Table(title=f"{data['name']}")
    for column in ("version", "kind", "status", "MiB", "base model", "dataset sha256", "scores", "aliases", "created by"):
        table.add_column(column)
    for v in data["versions"]:
        scores = "; ".join(f"{task}: " + ", ".join(f"{k}={x:.3g}" for k, x in figures.items() if isinstance(x, float))
                           for task, figures in v["scores"].items() if isinstance(figures, dict))
        table.add_row(str(v["version"]), v["kind"], v["status"], f"{v['size_bytes'] / 2**20:.1f}",
                      Path(v["base_model"]).name, (v["dataset_sha256"] or "-")[:12], scores, ", ".join(v["aliases"]),
                      v["created_by"])
    console.print(table)
    for move in data["alias_moves"]:
        to = ", ".join(f"{v}={w:g}" for v, w in move["weights"]) if move.get("weights") else move["to_version"]
        console.print(f"  {move['alias']}: {move['from_version']} -> {to} ({move['action']} by "
                      f"{move['actor']})", highlight=False)


@registry_app.command("register")
def register_command(run_dir: Path = typer.Argument(..., help="A run directory, a checkpoint, an adapter or model "
                                                    "folder, or a .gguf file."),
                     name: str = typer.Option(..., "--name", "-n", help="Registered model name."),
                     project: Optional[str] = PROJECT) -> None:
    """Register RUN_DIR as the next version of NAME (its artifact is copied under TUNEFORGE_HOME)."""
    register_run_dir(run_dir, name=name, project=project)


@registry_app.command("alias")
def alias_command(name: str = typer.Argument(..., help="Registered model name."),
                  version: int = typer.Argument(..., help="Version number."),
                  alias: str = typer.Argument(..., help="Alias, e.g. production or staging."),
                  project: Optional[str] = PROJECT) -> None:
    """Point ALIAS of NAME at VERSION (the move is recorded)."""
    from tuneforge.services.registry import set_alias

    with cli_platform() as platform:
        move = set_alias(platform, name, version, alias, project=cli_project(project), actor=cli_actor())
    console.print(f"{name}@{alias}: {move.from_version} -> {move.to_version}")


@registry_app.command("split")
def split_command(name: str = typer.Argument(..., help="Registered model name."),
                  to: str = typer.Option(..., "--to", help="VERSION=WEIGHT,... summing to 1, e.g. 7=0.9,8=0.1; "
                                         "8=1.0 ends the split."),
                  alias: str = typer.Option("production", "--alias", help="The alias whose traffic is split."),
                  project: Optional[str] = PROJECT) -> None:
    """Split the requests for NAME@ALIAS over versions by weight (an A/B test, sticky per OpenAI 'user')."""
    from tuneforge.registry.splits import parse_weights
    from tuneforge.services.registry import set_split

    with cli_platform() as platform:
        move = set_split(platform, project=cli_project(project), name=name, alias=alias, weights=parse_weights(to),
                         actor=cli_actor())
    shares = ", ".join(f"{v}: {w:g}" for v, w in (move.split() or {move.to_version: 1.0}).items())
    console.print(f"{name}@{alias}: {shares}", highlight=False)


@registry_app.command("rollback")
def rollback_command(name: str = typer.Argument(..., help="Registered model name."),
                     alias: str = typer.Argument(..., help="The alias to move back."),
                     project: Optional[str] = PROJECT) -> None:
    """Move ALIAS back to the version it pointed at before its last move."""
    from tuneforge.services.registry import rollback_alias

    with cli_platform() as platform:
        move = rollback_alias(platform, name, alias, project=cli_project(project), actor=cli_actor())
    console.print(f"{name}@{alias}: {move.from_version} -> {move.to_version} (rolled back)")


@registry_app.command("lineage")
def lineage_command(ref: Optional[str] = typer.Argument(None, help="NAME:VERSION (or NAME@ALIAS, NAME)."),
                    dataset: Optional[str] = typer.Option(None, "--dataset", help="A data file or its sha256: list "
                                                          "the versions trained on it."),
                    project: Optional[str] = PROJECT) -> None:
    """Show version -> job/run -> config -> dataset sha256 -> base model, or the versions trained on a dataset."""
    from tuneforge.errors import ConfigError
    from tuneforge.services.registry import lineage, trained_on, version_view

    if (ref is None) == (dataset is None):
        raise ConfigError("give NAME:VERSION or --dataset FILE_OR_SHA256", hint="tuneforge registry lineage bot:3")
    with cli_platform() as platform:
        if dataset is not None:
            digest, versions = trained_on(platform, dataset, project=cli_project(project))
            return _print({"dataset_sha256": digest, "versions": [version_view(v) for v in versions]})
        _print(lineage(platform, ref, project=cli_project(project)))


@registry_app.command("prune")
def prune_command(name: str = typer.Argument(..., help="Registered model name."),
                  keep: int = typer.Option(..., "--keep", help="Newest versions to keep (aliased ones are always kept)."),
                  project: Optional[str] = PROJECT) -> None:
    """Delete the artifacts of old versions no alias points at; the rows stay, marked pruned."""
    from tuneforge.services.registry import prune

    with cli_platform() as platform:
        result = prune(platform, name, project=cli_project(project), keep=keep)
    pruned = ", ".join(str(v.version) for v in result.pruned) or "none"
    console.print(f"pruned versions: {pruned}; freed {result.bytes_freed / 2**20:.1f} MiB ({result.bytes_freed} "
                  f"bytes); kept: {', '.join(map(str, result.kept))}")


def with_registered_base(config: Path, *, overrides: Sequence[str] = ()) -> Any:
    """The train config of ``config``, its ``model`` resolved when it names a registered version (a full model:
    training starts from its weights; an adapter is refused, its base model is what to name)."""
    from tuneforge.errors import ConfigError
    from tuneforge.services.training import as_train_config

    train_config = as_train_config(config, overrides=overrides)
    model = resolve_cli_model(train_config.model)
    if model.version is None:
        return train_config
    if model.version.kind == "adapter":
        raise ConfigError(f"model '{train_config.model}' is {model.version.ref}, an adapter: it cannot be a base model",
                          file=str(config), field="model",
                          hint=f"train on its base model ({model.version.base_model}), or register a merged version "
                          "('tuneforge merge RUN -o DIR', then 'tuneforge registry register DIR --name ...')")
    return train_config.model_copy(update={"model": model.path})
