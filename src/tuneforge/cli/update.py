"""``tuneforge update NAME --from production --data DATASET --since V``: an incremental update of a registered
model (``services.online``), once, or in a loop with ``--every 1h --min-new 200``.

Each cycle prints one line (new records, skipped or updated, the gate's verdict, what went live); ``--json``
prints each cycle's result as one JSON line. A cycle trains in ``$TUNEFORGE_HOME/updates/NAME-STAMP-N`` and
writes ``cycle.json`` there when it ends; ``--resume`` continues the newest folder of NAME without it (a cycle
that was killed) from its last checkpoint, or from its registration and gate, as a platform update job's next
attempt does.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import typer

from tuneforge.cli.registry import PROJECT, cli_actor, cli_platform, cli_project
from tuneforge.cli.render import ProgressRenderer, make_console
from tuneforge.errors import ConfigError

console = make_console()
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
CYCLE_FILE = "cycle.json"  # written in a cycle's folder when the cycle ends


def parse_every(value: str) -> float:
    """``90s`` / ``15m`` / ``1h`` / ``1d`` (or plain seconds) in seconds.

    Raises:
        ConfigError: Another shape, or zero.
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", value)
    seconds = float(match.group(1)) * UNITS[match.group(2) or "s"] if match else 0.0
    if seconds <= 0:
        raise ConfigError(f"--every {value!r} is not a duration", field="every", hint="e.g. --every 1h, 15m or 90s")
    return seconds


def update_command(
    name: str = typer.Argument(..., help="Registered model to update."),
    from_alias: str = typer.Option("production", "--from", help="Alias of the live version (its adapter is "
                                   "continued; the gate compares against it)."),
    data: str = typer.Option(..., "--data", "-d", help="Data set with the new records: NAME (newest version) or NAME:V."),
    since: int = typer.Option(..., "--since", help="Train on the records added after this version of the data set."),
    replay: float = typer.Option(0.2, "--replay", help="Share of the older records mixed back in (0-1)."),
    suite: Path = typer.Option(..., "--suite", help="Held-out suite YAML of the regression gate."),
    max_drop: Optional[list[str]] = typer.Option(None, "--max-drop", metavar="METRIC=VALUE",
                                                 help="Allowed drop against the live version (default "
                                                 "exact_match=0.02; repeatable)."),
    go_live: str = typer.Option("staging", "--go-live", help="Where a version that passes goes: staging, production "
                                "or split:SHARE."),
    overrides: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE",
                                                  help="Override the training config, e.g. --set train.epochs=2."),
    every: Optional[str] = typer.Option(None, "--every", help="Run a cycle every period (1h, 15m, 90s) until "
                                        "interrupted."),
    min_new: int = typer.Option(1, "--min-new", help="Skip a cycle with fewer new records than this."),
    cycles: Optional[int] = typer.Option(None, "--cycles", help="With --every: stop after this many cycles."),
    project: Optional[str] = PROJECT,
    as_json: bool = typer.Option(False, "--json", help="Print each cycle's result as a JSON line."),
    resume: bool = typer.Option(False, "--resume", help="First continue NAME's newest interrupted cycle (from its "
                                "last checkpoint, or its registration and gate); a new cycle when there is none."),
) -> None:
    """Continue NAME@FROM's adapter on the records DATA gained since version SINCE, gate it, and let it go live."""
    from tuneforge.services.online import UpdateRequest, check_update

    period = parse_every(every) if every else None
    request = UpdateRequest.model_validate({
        "name": name, "from": from_alias, "dataset": data, "since": since, "replay": replay, "suite": str(suite),
        "go_live": go_live, "overrides": overrides or [], **({"max_drop": max_drop} if max_drop else {})})
    with cli_platform() as platform:
        check_update(platform, request, project=cli_project(project))
        interrupted = interrupted_cycle(platform.settings.home_dir / "updates", name) if resume else None
    if resume:
        (make_console(stderr=True) if as_json else console).print(f"resuming the interrupted cycle in {interrupted}" if interrupted else
                      f"no interrupted cycle of {name} to resume: starting a new one", highlight=False)
    count = 0
    while True:
        count += 1
        outcome = run_cycle(request, project=cli_project(project), min_new=min_new, cycle=count, as_json=as_json,
                            resume_dir=interrupted if count == 1 else None)
        if outcome.get("data"):  # the next cycle trains on what arrives after the version used now
            request = request.model_copy(update={"since": outcome["data"]["version"]})
        if period is None or (cycles is not None and count >= cycles):
            return
        try:
            time.sleep(period)
        except KeyboardInterrupt:
            console.print(f"stopped after {count} cycle(s)")
            return


def interrupted_cycle(folder: Path, name: str) -> Path | None:
    """The newest cycle folder of ``name`` under ``folder`` that has no ``cycle.json`` (the cycle did not end)."""
    pattern = re.compile(re.escape(name) + r"-\d{8}-\d{6}-\d+")
    found = [p for p in folder.glob(f"{name}-*") if pattern.fullmatch(p.name) and not (p / CYCLE_FILE).exists()]
    return max(found, key=lambda p: p.stat().st_mtime, default=None)


def run_cycle(request: Any, *, project: str, min_new: int, cycle: int, as_json: bool,
              resume_dir: Path | None = None) -> dict[str, Any]:
    """One cycle: count the new records, update when there are enough; prints one line (or JSON), returns it.

    ``resume_dir``: continue the interrupted cycle trained there (no count: it had enough records).
    """
    from tuneforge.services.online import count_new_records, update_model

    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    with cli_platform() as platform:
        new = count_new_records(platform, request.dataset, since=request.since, project=project)
        outcome: dict[str, Any] = {"cycle": cycle, "at": stamp, "new_records": new, "since": request.since}
        if resume_dir is None and new < max(min_new, 1):
            _say({**outcome, "state": "skipped"}, as_json, f"cycle {cycle}: {new} new records in {request.dataset} "
                 f"since version {request.since} (< {max(min_new, 1)}): skipped")
            return outcome
        run_dir = resume_dir or platform.settings.home_dir / "updates" / f"{request.name}-{stamp}-{cycle}"
        with ProgressRenderer(make_console(stderr=True) if as_json else console) as progress:
            result = update_model(platform, request, project=project, actor=cli_actor(), run_dir=run_dir,
                                  progress=progress, resume=resume_dir is not None)
    outcome.update(state="updated", resumed=resume_dir is not None, **result.view())
    (run_dir / CYCLE_FILE).write_text(json.dumps(outcome, default=str))
    verdict = f"live as {result.live}" if result.live else "not served: " + "; ".join(result.gate["regressions"])
    _say(outcome, as_json, f"cycle {cycle}: {new} new records -> {result.version.ref} (from {result.parent.ref}, "
         f"{result.data['ref']}), gate {result.gate['status']}, {verdict} ({result.seconds:.1f} s)")
    return outcome


def _say(outcome: dict[str, Any], as_json: bool, line: str) -> None:
    if as_json:
        print(json.dumps(outcome, default=str), flush=True)
    else:
        console.print(line, highlight=False)
