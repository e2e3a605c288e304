"""The ``hpo_trial`` job kind: one trial of a stored study, run by any worker (registered in ``job_kinds``)."""

from __future__ import annotations

import time
import zlib
from typing import Any

from tuneforge.errors import TuneforgeError
from tuneforge.jobs.kinds import JobContext, JobKind, JobOutcome

STALE_WAIT_SECONDS = 2.0  # extra wait, beyond the grace period, for a dead trial to be failed and queued again


class HpoTrialKind(JobKind):
    """A trial job: asks the study for a trial (a retry of a dead one first), trains it in the job's run directory.

    A job whose study is full, paused or cancelled ends without a trial. When the study's missing trials are
    held by a process that may have died, the job waits (at most the heartbeat's grace period) for Optuna to
    fail that trial and queue its retry, then runs the retry.
    """

    name, title, id_prefix = "hpo_trial", "Trial job", "hpojob"

    def run(self, context: JobContext) -> JobOutcome:
        from tuneforge.hpo.study import load_study, run_one_trial, study_counts

        job, settings = context.job, context.settings
        name = job.config["study"]
        context.recorder.message(f"Trial job of study {name} started (attempt {job.attempts})")
        seed = zlib.crc32(f"{job.id}:{job.attempts}".encode())
        deadline = time.monotonic() + settings.stale_after_seconds + settings.heartbeat_seconds * 2 + STALE_WAIT_SECONDS
        while True:
            number = run_one_trial(name, settings=settings, seed=seed, run_dir=context.run_dir,
                                   progress=context.recorder, on_trial=lambda t: t.set_user_attr("job_id", job.id))
            study = load_study(name, settings=settings)
            counts = study_counts(study)
            if number is not None or not counts.running or study.user_attrs.get("state") != "running" \
                    or time.monotonic() > deadline:
                break
            time.sleep(settings.heartbeat_seconds)
        if number is None:
            context.recorder.message(f"study {name} needs no more trials: nothing to run")
            return JobOutcome(result={"study": name, "trial": None, "state": "skipped"})
        return _outcome(study.trials[number], name)

    def error_of(self, exc: BaseException) -> dict[str, Any]:
        if isinstance(exc, TuneforgeError):
            return {"code": "trial_failed", "message": str(exc), "param": getattr(exc, "field", None)}
        return super().error_of(exc)


def _outcome(trial: Any, name: str) -> JobOutcome:
    state = trial.state.name.lower()
    if state == "fail":
        raise TuneforgeError(f"trial {trial.number} of study {name} failed: {trial.user_attrs.get('error', '?')}",
                             hint="the trial's events and run directory show why")
    return JobOutcome(result={"study": name, "trial": trial.number, "state": state, "values": trial.values,
                              "params": trial.params, "steps": trial.user_attrs.get("steps")},
                      progress={"step": trial.user_attrs.get("steps")})
