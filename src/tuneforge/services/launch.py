"""Training on several processes or machines: the launcher command that re-runs ``tuneforge train`` under
``torch.distributed.run`` (torchrun).

The launcher starts ``nproc`` copies of the same CLI entry on each machine and sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; inside, ``run_training`` joins the process group through
accelerate and the Trainer wraps the model as ``train.distributed`` says (see
:mod:`tuneforge.training.distributed`). The CLI and the platform's train jobs both build their command here.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

from tuneforge.errors import ConfigError

LAUNCHER_MODULE = "torch.distributed.run"
CLI_MODULE = "tuneforge.cli.app"


@dataclass(frozen=True)
class LaunchPlan:
    """Where the processes of a run are.

    Attributes:
        nproc: Processes on this machine (one per GPU; on CPU, one per group of cores).
        nnodes: Machines in the run.
        node_rank: This machine's index, 0 to ``nnodes - 1`` (0 is the one that writes the run folder).
        master: ``ADDR:PORT`` of machine 0, reachable from every machine (needed with ``nnodes > 1``).

    The processes see the GPUs of ``CUDA_VISIBLE_DEVICES`` (a platform job: those its worker handed it).
    """

    nproc: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master: str | None = None

    @property
    def distributed(self) -> bool:
        """Whether the run needs the launcher (more than one process in all)."""
        return self.nproc * self.nnodes > 1


def check_plan(plan: LaunchPlan) -> tuple[str, int] | None:
    """Validate ``plan``; return the master's (address, port), or None for one machine without ``--master``.

    Raises:
        ConfigError: Naming the option that is wrong.
    """
    if plan.nproc < 1:
        raise ConfigError(f"--nproc {plan.nproc}: give 1 or more processes", field="--nproc")
    if plan.nnodes < 1:
        raise ConfigError(f"--nnodes {plan.nnodes}: give 1 or more machines", field="--nnodes")
    if not 0 <= plan.node_rank < plan.nnodes:
        raise ConfigError(f"--node-rank {plan.node_rank} is outside 0..{plan.nnodes - 1}", field="--node-rank",
                          hint="number the machines 0 to --nnodes - 1; machine 0 writes the run folder")
    if plan.master is None:
        if plan.nnodes > 1:
            raise ConfigError("--master ADDR:PORT is needed with --nnodes above 1", field="--master",
                              hint="the address and a free port of machine 0, the same on every machine")
        return None
    host, sep, port = plan.master.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--master {plan.master!r} is not ADDR:PORT", field="--master", hint="e.g. --master 10.0.0.1:29500")
    return host, int(port)


def launch_command(plan: LaunchPlan, *, cli_args: Sequence[str], python: str = sys.executable) -> list[str]:
    """The command that runs ``tuneforge <cli_args>`` on ``plan.nproc`` processes of this machine.

    One machine without a master uses torchrun's ``--standalone`` (a free local port); several use a static
    rendezvous at ``plan.master``.

    Raises:
        ConfigError: See :func:`check_plan`.
    """
    master = check_plan(plan)
    command = [python, "-m", LAUNCHER_MODULE, f"--nproc-per-node={plan.nproc}", f"--nnodes={plan.nnodes}"]
    if master is None:
        command.append("--standalone")
    else:
        command += [f"--node-rank={plan.node_rank}", f"--master-addr={master[0]}", f"--master-port={master[1]}"]
    return [*command, "-m", CLI_MODULE, *cli_args]


def train_arguments(config_file: str, *, resume: bool = False, overwrite: bool = False,
                    overrides: Sequence[str] = ()) -> list[str]:
    """``train CONFIG [--resume] [--overwrite] [--set K=V ...]``: what each launched process runs."""
    args = ["train", config_file]
    args += ["--resume"] if resume else []
    args += ["--overwrite"] if overwrite else []
    for override in overrides:
        args += ["--set", override]
    return args
