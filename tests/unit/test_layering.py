"""The import graph of src/tuneforge follows the layering of STYLE.md; this test keeps it so.

The rules, for a newcomer:

1. Packages sit on levels; an import may go to the same package or DOWN to any lower level, never up:

       shells        cli, api                      (parse, call services, render)
       services      services                      (use cases; registers the job kinds)
       platform      jobs, hpo, registry, serving, monitoring
       domain        training, evaluation, compression
       model/data    models, data
       base          storage, config
       foundation    errors, progress, settings    (import nothing of tuneforge)

   ``tuneforge/__init__.py`` (``tuneforge.train``) is a shell; its ``__version__`` may be imported from
   anywhere (a string, not code).
2. Never sideways between two different packages of the same level, except the pairs in ``SIDEWAYS``,
   each with its reason.
3. Only ``api/`` imports fastapi, starlette and uvicorn; only ``cli/`` imports typer and rich.
4. No module outside ``cli/``, ``api/`` and ``settings.py`` mentions ``os.environ`` or ``os.getenv``
   (the shells read the environment into :class:`Settings` and pass it down), except ``ENVIRON_ALLOWED``.
5. No module imports another package's private (``_name``) names.
6. ``jobs/`` imports nothing from ``training/``, ``evaluation/`` or ``compression/`` (``FORBIDDEN``): it runs
   job kinds that ``services`` registers.

Every import counts: at module top, inside functions (lazy imports), and under ``TYPE_CHECKING``. A
``TYPE_CHECKING`` import creates no runtime edge, but it is still a dependency of the code's meaning (as
Optuna counts it); it must follow the same arrows. A failure lists every offending arrow as
``module -> imported (rule)``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import tuneforge

ROOT = Path(tuneforge.__file__).parent

LEVELS: dict[str, int] = {
    **dict.fromkeys(("errors", "progress", "settings"), 0),
    **dict.fromkeys(("storage", "config"), 1),
    **dict.fromkeys(("models", "data"), 2),
    **dict.fromkeys(("training", "evaluation", "compression"), 3),
    **dict.fromkeys(("jobs", "hpo", "registry", "serving", "monitoring"), 4),
    "services": 5,
    **dict.fromkeys(("cli", "api", "__init__"), 6),
}

# Sideways arrows allowed between packages of one level: (importer, imported) -> why.
SIDEWAYS: dict[tuple[str, str], str] = {
    ("compression", "training"): "a recovery fine-tune after pruning goes through run_training, and distillation "
    "reuses training's progress callback, precision and quiet Trainer (no second training loop)",
    ("compression", "evaluation"): "each stage is measured with the evaluation runner, suites and result shapes "
    "(one way to score and time a model)",
    ("cli", "api"): "'tuneforge server' builds the API app (api.app) to serve it; both are shells",
    ("hpo", "jobs"): "a local trial process ends with its study process through the job process's watchdog "
    "(jobs.process.watch_parent: one copy); jobs/ never imports hpo/",
}

# Packages that must not import others although the levels would allow it: importer -> (forbidden, why).
NO_ML = ("training", "evaluation", "compression")
FORBIDDEN: dict[str, tuple[tuple[str, ...], str]] = {
    "jobs": (NO_ML, "jobs/ runs job kinds and knows no ML; services registers the kinds that train, evaluate, "
             "compress"),
}

WEB_PACKAGES = ("fastapi", "starlette", "uvicorn")
CLI_PACKAGES = ("typer", "rich", "click")

# Modules outside the shells that may touch os.environ: module -> why.
# Otherwise none: the job processes inherit what their shell set (quiet_environment).
ENVIRON_ALLOWED: dict[str, str] = {
    "tuneforge.jobs.process": "hands a job the GPUs its worker gave it (CUDA_VISIBLE_DEVICES) before CUDA starts",
}


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name."""
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = ("tuneforge", *path.relative_to(ROOT).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def package_of(module: str) -> str:
    """``tuneforge.training.run`` -> ``training``; ``tuneforge`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports_of(module: str, path: Path) -> list[tuple[str, list[str]]]:
    """``(imported module, names)`` of every import in a module (top level, in functions, under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((base, [alias.name for alias in node.names]))
    return found


def layering_offences(module: str, target: str, names: list[str]) -> list[str]:
    """The rules (1, 2, 5) an arrow ``module -> target`` breaks."""
    source_pkg, target_pkg = package_of(module), package_of(target)
    if target == "tuneforge" and names == ["__version__"]:
        return []
    if source_pkg == target_pkg:
        return []
    offences = []
    source_level, target_level = LEVELS.get(source_pkg), LEVELS.get(target_pkg)
    if source_level is None or target_level is None:
        offences.append(f"package not in LEVELS: {source_pkg if source_level is None else target_pkg}")
    elif target_level > source_level:
        offences.append(f"up: {source_pkg} (level {source_level}) imports {target_pkg} (level {target_level})")
    elif target_level == source_level and (source_pkg, target_pkg) not in SIDEWAYS:
        offences.append(f"sideways: {source_pkg} and {target_pkg} share level {source_level}; not in SIDEWAYS")
    forbidden, why = FORBIDDEN.get(source_pkg, ((), ""))
    if target_pkg in forbidden:
        offences.append(f"forbidden: {why}")
    private = [n for n in names if n.startswith("_") and not n.startswith("__")]
    private += [part for part in target.split(".") if part.startswith("_") and not part.startswith("__")]
    if private:
        offences.append(f"private name of another package: {', '.join(private)}")
    return offences


def third_party_offences(module: str, target: str) -> list[str]:
    """Rule 3: web frameworks only in api/, CLI libraries only in cli/."""
    top, pkg = target.split(".")[0], package_of(module)
    if top in WEB_PACKAGES and pkg != "api":
        return [f"only api/ imports {top}"]
    if top in CLI_PACKAGES and pkg != "cli":
        return [f"only cli/ imports {top}"]
    return []


def environ_offences(module: str, path: Path) -> list[str]:
    """Rule 4: the environment is read by the shells and settings.py only."""
    if package_of(module) in ("cli", "api", "settings") or module in ENVIRON_ALLOWED:
        return []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "putenv", "unsetenv"):
            if isinstance(node.value, ast.Name) and node.value.id == "os":
                return [f"reads or writes os.{node.attr} (line {node.lineno}); take it from Settings"]
        if isinstance(node, ast.ImportFrom) and node.module == "os":
            if any(alias.name in ("environ", "getenv", "putenv") for alias in node.names):
                return [f"imports os.environ/getenv (line {node.lineno}); take it from Settings"]
    return []


def offending_arrows() -> list[str]:
    """Every arrow (or module) that breaks a rule, as ``module -> imported (rule)``."""
    found = []
    for module, path in modules().items():
        for target, names in imports_of(module, path):
            if target == "tuneforge" or target.startswith("tuneforge."):
                found += [f"{module} -> {target} ({why})" for why in layering_offences(module, target, names)]
            found += [f"{module} -> {target} ({why})" for why in third_party_offences(module, target)]
        found += [f"{module} -> os.environ ({why})" for why in environ_offences(module, path)]
    return sorted(set(found))


def test_imports_follow_the_layering():
    offences = offending_arrows()
    assert not offences, "imports against the layering of STYLE.md:\n  " + "\n  ".join(offences)


def test_every_package_has_a_level():
    packages = {package_of(m) for m in modules()}
    assert packages <= set(LEVELS), f"add these packages to LEVELS: {sorted(packages - set(LEVELS))}"


def test_the_rules_catch_what_they_should():
    assert layering_offences("tuneforge.models.inference", "tuneforge.services.training", [])  # up
    assert layering_offences("tuneforge.training.run", "tuneforge.evaluation.runner", [])  # sideways, not listed
    assert not layering_offences("tuneforge.compression.pipeline", "tuneforge.evaluation.suites", [])  # listed
    assert layering_offences("tuneforge.compression.steps.export", "tuneforge.evaluation.generation", ["_stop"])
    assert not layering_offences("tuneforge.evaluation.runner", "tuneforge", ["__version__"])
    assert layering_offences("tuneforge.jobs.worker", "tuneforge.training.run", [])  # allowed by level, forbidden
    assert third_party_offences("tuneforge.services.jobs", "fastapi.responses")
    assert not third_party_offences("tuneforge.cli.app", "typer")
