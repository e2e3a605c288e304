"""Command-line overrides of a config: ``--set train.learning_rate=1e-4 --set method.r=32``.

Each override is ``DOTTED.KEY=VALUE``; the value is parsed as a YAML scalar (``1e-4``, ``true``, ``null``,
``[q_proj, v_proj]``), a number key indexes a list (``data.train.1.weight=0.3``), and a name shorthand
(``method: lora``) becomes a mapping (``{name: lora}``) and a one-file ``data.train`` a list of sources
(``{path: ...}``) when a key below it is set. The result is validated like
the file; an error about an overridden field names the ``--set`` argument (:func:`override_origin`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import yaml

from tuneforge.errors import ConfigError

HINT = "write --set KEY=VALUE with a dotted key, e.g. --set train.learning_rate=1e-4 --set method.r=32"


def parse_override(argument: str) -> tuple[list[str | int], Any]:
    """Split ``a.b.0.c=value`` into its key path and its YAML-parsed value.

    Raises:
        ConfigError: No ``=``, an empty key part, or a value that is not YAML; the error names the argument.
    """
    key, sep, text = argument.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(part.strip() for part in parts):
        raise ConfigError(f"--set {argument}: expected KEY=VALUE with a dotted key", hint=HINT)
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {argument}: the value is not valid YAML ({getattr(exc, 'problem', exc)})",
                          hint="quote the value for the shell, e.g. --set 'data.system_prompt=You are terse.'"
                          ) from None
    return [int(p) if p.strip().isdigit() else p.strip() for p in parts], value


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of the config mapping ``raw`` with every ``KEY=VALUE`` override applied in order.

    Args:
        raw: The config as read from YAML (not yet validated).
        overrides: ``--set`` arguments, e.g. ``["train.learning_rate=1e-4", "method.r=32"]``.

    Returns:
        The new mapping; ``raw`` is left unchanged.

    Raises:
        ConfigError: A malformed argument, or a key path that goes through a value that is neither a mapping
            nor a list (the error names the argument).
    """
    result = copy.deepcopy(raw)
    for argument in overrides:
        path, value = parse_override(argument)
        _set(result, path, value, argument=argument)
    return result


def override_origin(field: str | None, overrides: Sequence[str]) -> str | None:
    """The last ``--set`` argument that set ``field`` (a dotted path) or a key above or below it, if any."""
    if not field:
        return None
    for argument in reversed(overrides):
        key = argument.partition("=")[0].strip()
        if field == key or field.startswith(key + ".") or key.startswith(field + "."):
            return argument
    return None


def _set(node: Any, path: list[str | int], value: Any, *, argument: str) -> None:
    for depth, part in enumerate(path[:-1]):
        node = _child(node, part, path[depth + 1], argument=argument)
    last = path[-1]
    if isinstance(node, list):
        if not isinstance(last, int) or last > len(node):
            raise ConfigError(f"--set {argument}: '{last}' is not a position of that list (0..{len(node)})",
                              hint=HINT)
        node[last:last + 1] = [value]  # one past the end appends
    elif isinstance(node, dict):
        node[str(last)] = value
    else:
        raise ConfigError(f"--set {argument}: cannot set '{last}' inside {node!r}", hint=HINT)


def _child(node: Any, part: str | int, following: str | int, *, argument: str) -> Any:
    """The mapping or list at ``node[part]``, created (or expanded from a name shorthand) when needed."""
    if isinstance(node, list) and isinstance(part, int) and part < len(node):
        holder, key = node, part
    elif isinstance(node, dict):
        holder, key = node, str(part)
    else:
        raise ConfigError(f"--set {argument}: '{part}' is not a key or position of {node!r}", hint=HINT)
    child = holder[key] if isinstance(holder, list) else holder.get(key)
    if child is None:
        child = holder[key] = [] if isinstance(following, int) else {}
    elif isinstance(child, str) and not isinstance(following, int):
        # The shorthands as mappings: a name (method: lora) or, in a list of sources, a file path.
        child = holder[key] = {"path" if isinstance(holder, list) else "name": child}
    elif isinstance(child, str) and isinstance(following, int):
        child = holder[key] = [child]  # a one-file shorthand (train: a.jsonl) as a list
    return child
