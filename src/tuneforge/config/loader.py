"""Read a YAML config into a validated model; errors name the file, the line, the field and a hint."""

from __future__ import annotations

import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from tuneforge.config.overrides import apply_overrides, override_origin
from tuneforge.errors import ConfigError, suggest

M = TypeVar("M", bound=BaseModel)


def load_config(path: str | Path, model: type[M] | None = None, *, overrides: Sequence[str] = ()) -> M:
    """Load and validate a YAML config file.

    Args:
        path: The YAML file.
        model: The pydantic model to validate into (default: :class:`TrainConfig`).
        overrides: ``KEY=VALUE`` command-line overrides (``--set``), applied before validation
            (:func:`tuneforge.config.overrides.apply_overrides`).

    Returns:
        The validated config.

    Raises:
        ConfigError: The file is missing, is not YAML, or does not validate; the error names the line
            and the field, with a close key as hint for a typo.
    """
    from tuneforge.config.models import TrainConfig

    model = model or TrainConfig  # type: ignore[assignment]
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}", hint=f"check the path; {_examples_hint(model)}")
    text = path.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(
            f"not valid YAML: {getattr(exc, 'problem', exc)}",
            file=str(path),
            line=mark.line + 1 if mark else None,
            hint="check indentation and quoting around that line",
        ) from None
    if not isinstance(data, dict):
        raise ConfigError("the config must be a mapping of keys to values", file=str(path), line=1)
    return validate_config(apply_overrides(data, overrides), model, file=str(path), root=root, overrides=overrides)


def validate_config(
    data: dict[str, Any],
    model: type[M],
    *,
    file: str | None = None,
    root: yaml.Node | None = None,
    overrides: Sequence[str] = (),
    strict: bool = False,
    options: Mapping[str, str] | None = None,
) -> M:
    """Validate a mapping into ``model``, turning the first pydantic error into a :class:`ConfigError`.

    ``overrides`` are the ``--set`` arguments already applied to ``data``: an error about a field they set names
    the argument rather than ``file``. ``strict``: no coercion (``"3"`` and ``true`` are not numbers): the API's
    JSON bodies. YAML files stay lax, since YAML 1.1 reads ``2e-4`` as a string. ``options`` maps top-level fields to
    the command-line option that set them (``{"max_batch": "--max-batch"}``): an error names the option the user
    typed rather than the field.
    """
    try:
        return model.model_validate(data, strict=strict)
    except ValidationError as exc:
        error = _config_error(exc, model, file=file, root=root, overrides=overrides)
        option = (options or {}).get((error.field or "").split(".")[0])
        if option is not None:
            raise ConfigError(error.message.removeprefix(f"field '{error.field}': "), file=option,
                              hint=error.hint) from None
        raise error from None


def _config_error(
    exc: ValidationError, model: type[BaseModel], *, file: str | None, root: Any, overrides: Sequence[str]
) -> ConfigError:
    err = exc.errors()[0]
    # Drop the branch tags of plain unions (DataConfig's '<file>' / '<sources>'): they are no keys of the YAML.
    loc = [part for part in err["loc"] if isinstance(part, int) or (isinstance(part, str) and part[:1] != "<")]
    field_path = _field_path(model, loc)
    hint = None
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        allowed = _allowed_keys(model, loc[:-1])
        message = f"unknown key '{loc[-1]}'"
        hint = suggest(loc[-1], allowed) or f"allowed keys here: {', '.join(sorted(allowed))}"
    elif err["type"] == "missing":
        message = "this required field is missing"
        hint = f"add '{loc[-1]}:' to the config"
    elif err["type"] == "union_tag_invalid":
        tag = err.get("ctx", {}).get("tag")
        expected = err.get("ctx", {}).get("expected_tags", "")
        label = loc[-1] if loc and isinstance(loc[-1], str) else "name"
        message = f"unknown {label} '{tag}'; expected one of {expected}"
        hint = suggest(tag, [t.strip(" '") for t in expected.split(",")]) or None
    elif "input" in err and not isinstance(err["input"], (dict, list)):
        message = f"{message} (got {err['input']!r})"
    if hint is None:
        hint = _examples_hint(model)
    origin = override_origin(field_path, overrides)
    if origin is not None:  # the value came from the command line, not from the file
        return ConfigError(message, file=f"--set {origin}", field=field_path, hint=hint)
    return ConfigError(message, file=file, line=_line_of(root, loc), field=field_path or None, hint=hint)


def _examples_hint(model: type[BaseModel]) -> str:
    """Where a user finds every field of ``model`` with its allowed values (its ``examples_hint``)."""
    return getattr(model, "examples_hint", None) or "the README lists the fields and their allowed values"


def _field_path(model: type[BaseModel], loc: list[str | int]) -> str:
    """Dotted field path without the discriminator tags that pydantic inserts in ``loc``."""
    return ".".join(str(p) for p in _strip_tags(model, loc))


def _strip_tags(model: type[BaseModel], loc: list[str | int]) -> list[str | int]:
    parts: list[str | int] = []
    current: Any = model
    i = 0
    while i < len(loc):
        part = loc[i]
        parts.append(part)
        i += 1
        if isinstance(part, int):  # a list position: the list's item model stays current
            if isinstance(current, list) and i < len(loc):
                current, tagged = _pick_member(current, loc[i])
                i += tagged  # a discriminated union's tag follows the position
            continue
        current = _child_model(current, part)
        if isinstance(current, list) and i < len(loc) and not isinstance(loc[i], int):
            # A discriminated union: the next loc part is the tag, not a key of the YAML.
            current, tagged = _pick_member(current, loc[i])
            i += tagged
    return parts


def _allowed_keys(model: type[BaseModel], loc: list[str | int]) -> list[str]:
    loc = [part for part in loc if not isinstance(part, int)]  # list positions do not change the model
    current: Any = model
    i = 0
    while i < len(loc) and current is not None:
        current = _child_model(current, loc[i])
        i += 1
        if isinstance(current, list):
            if i >= len(loc):  # the keys of every member of a union (e.g. DataSource or EvalSplit)
                return list(dict.fromkeys(key for member in current for key in member.model_fields))
            current, tagged = _pick_member(current, loc[i])
            i += tagged
    return list(current.model_fields) if isinstance(current, type) and issubclass(current, BaseModel) else []


def _pick_member(members: list[type[BaseModel]], key: Any) -> tuple[type[BaseModel] | None, bool]:
    """The union member that ``key`` names: by its tag (``True``: the key is the tag), else the one with that field."""
    tagged = next((m for m in members if _tag_of(m) is not None and _tag_of(m) == key), None)
    if tagged is not None:
        return tagged, True
    return next((m for m in members if key in m.model_fields), None), False


def _child_model(model: Any, key: str | int) -> Any:
    """The model class (or list of union members) behind ``model.key``."""
    if not (isinstance(model, type) and issubclass(model, BaseModel)) or key not in model.model_fields:
        return None
    annotation = model.model_fields[key].annotation
    members = [a for a in _flatten(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
    if len(members) > 1:
        return members
    return members[0] if members else None


def _flatten(annotation: Any) -> list[Any]:
    args = typing.get_args(annotation)
    if not args:
        return [annotation]
    if typing.get_origin(annotation) is typing.Annotated:
        return _flatten(args[0])
    return [leaf for arg in args for leaf in _flatten(arg)]


def _tag_of(model: type[BaseModel]) -> Any:
    field = model.model_fields.get("name")
    return field.default if field is not None else None


def _line_of(root: Any, loc: list[str | int]) -> int | None:
    """1-based line of the deepest YAML node that ``loc`` reaches."""
    node, line = root, (root.start_mark.line + 1 if root is not None else None)
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if match is None:
                continue  # a discriminator tag or a key the file does not have
            line = match[0].start_mark.line + 1
            node = match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line
