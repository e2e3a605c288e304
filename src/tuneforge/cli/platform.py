"""Platform commands: ``tuneforge server``, ``tuneforge worker``, ``tuneforge keys create``."""

from __future__ import annotations

import signal
import time
from typing import Optional

import typer

from tuneforge.cli.render import make_console
from tuneforge.errors import ConfigError

keys_app = typer.Typer(help="API keys of the server.", no_args_is_help=True)
admin_app = typer.Typer(help="Operations on the server's home and database.", no_args_is_help=True)
console = make_console()


def _settings(database_url: Optional[str], home: Optional[str], concurrency: int, base_model: list[str],
              allow_local_paths: bool = False, max_upload_mb: Optional[float] = None, stale_after: float = 30.0,
              threads_per_job: int = 0, **limits: object):
    from tuneforge.settings import Settings

    from_env = Settings.from_env()
    models = dict(from_env.base_models)
    for item in base_model:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--base-model {item!r} is not NAME=DIR", field="base_model",
                              hint="e.g. --base-model tiny-llama=/models/tiny-llama")
        models[name] = path
    return Settings.from_env(
        concurrency=concurrency, base_models=models, allow_local_paths=allow_local_paths,
        stale_after_seconds=stale_after, threads_per_job=threads_per_job, database_url=database_url or None,
        home=home or None, max_upload_bytes=int(max_upload_mb * 2**20) if max_upload_mb else None, **limits)


def _caps(items: list[str]) -> dict[str, int] | None:
    """``--priority-cap PROJECT=N`` options as a mapping."""
    caps = {}
    for item in items:
        project, sep, value = item.partition("=")
        if not sep or not project or not value.lstrip("-").isdigit():
            raise ConfigError(f"--priority-cap {item[:80]!r} is not PROJECT=N", field="priority_caps",
                              hint="e.g. --priority-cap research=50")
        caps[project] = int(value)
    return caps or None


DB = typer.Option(None, "--database-url", help="sqlite:///PATH or postgresql://... (default: TUNEFORGE_DATABASE_URL, "
                  "else a SQLite file under TUNEFORGE_HOME).")
HOME = typer.Option(None, "--home", help="TUNEFORGE_HOME: artifacts and run directories.")
MODELS = typer.Option([], "--base-model", help="NAME=DIR: a base model jobs may name (repeatable).")
STALE = typer.Option(30.0, "--stale-after", help="Seconds without a heartbeat before a job is requeued.")
THREADS = typer.Option(0, "--threads-per-job", help="torch CPU threads of each job (0: CPU cores / concurrency).")
RUNNING_LIMIT = typer.Option(0, "--max-running-per-project",
                             help="Jobs of one project running at once across workers (0: no limit).")


def server(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    concurrency: int = typer.Option(1, help="Jobs the embedded worker runs at once (0: API only)."),
    database_url: Optional[str] = DB,
    home: Optional[str] = HOME,
    base_model: list[str] = MODELS,
    allow_local_paths: bool = typer.Option(False, help="Accept local model directories as 'model'."),
    max_upload_mb: float = typer.Option(512.0, help="Largest accepted upload in MiB (larger: 413)."),
    stale_after: float = STALE,
    threads_per_job: int = THREADS,
    max_priority: int = typer.Option(100, help="The highest priority a project's job may ask for."),
    priority_cap: list[str] = typer.Option([], "--priority-cap", help="PROJECT=N: that project's cap (repeatable)."),
    max_queued_per_project: int = typer.Option(1000, help="Waiting jobs per project; over it: 429 (0: no limit)."),
    max_running_per_project: int = RUNNING_LIMIT,
    storage_quota_mb: float = typer.Option(0.0, help="MiB of files per project; over it: 413 (0: no quota)."),
    checkpoint_retention: int = typer.Option(3, help="Checkpoints an OpenAI-style job keeps (the newest N)."),
    max_batch: int = typer.Option(16, help="Inference: most sequences generated together."),
    adapter_cache: int = typer.Option(8, help="Inference: adapters kept loaded per base model (LRU)."),
    log_requests: bool = typer.Option(False, "--log-requests", help="Inference: keep prompts and answers in the "
                                      "request log (for 'tuneforge data collect --from-traffic')."),
) -> None:
    """Start the API (OpenAI-compatible /v1 and the native /api/v1) and the web console (/ui) with an embedded
    worker pool; the ft: models of finished jobs (and registered versions) answer /v1/chat/completions and
    /v1/completions."""
    from tuneforge.api.app import serve
    from tuneforge.config import validate_config
    from tuneforge.serving.config import ServingConfig

    settings = _settings(database_url, home, concurrency, base_model, allow_local_paths, max_upload_mb, stale_after,
                         threads_per_job, max_priority=max_priority, priority_caps=_caps(priority_cap),
                         max_queued_jobs_per_project=max_queued_per_project,
                         max_running_jobs_per_project=max_running_per_project,
                         storage_quota_bytes=int(storage_quota_mb * 2**20), checkpoint_retention=checkpoint_retention)
    console.print(f"tuneforge server on http://{host}:{port} (web console: /ui, docs: /docs), "
                  f"database {_safe(settings.database_url)}")
    serving = validate_config({"max_batch": max_batch, "adapter_cache": adapter_cache, "log_requests": log_requests},
                              ServingConfig)
    serve(settings, host=host, port=port, serving=serving)


def worker(
    concurrency: int = typer.Option(1, help="Jobs this worker runs at once."),
    database_url: Optional[str] = DB,
    home: Optional[str] = HOME,
    base_model: list[str] = MODELS,
    stale_after: float = STALE,
    threads_per_job: int = THREADS,
    max_running_per_project: int = RUNNING_LIMIT,
    gpus: Optional[str] = typer.Option(None, "--gpus", help="GPU indices this worker hands out, e.g. 0,1,2,3: each "
                                       "job gets its own (a train job with tuneforge.nproc N gets N) as "
                                       "CUDA_VISIBLE_DEVICES."),
) -> None:
    """Run jobs from the shared queue (on another machine: a PostgreSQL database and a shared TUNEFORGE_HOME)."""
    from tuneforge.services.workers import make_worker

    settings = _settings(database_url, home, concurrency, base_model, stale_after=stale_after,
                         threads_per_job=threads_per_job, max_running_jobs_per_project=max_running_per_project)
    devices = [item.strip() for item in (gpus or "").split(",") if item.strip()]
    pool = make_worker(settings, name="worker", gpus=devices)
    signal.signal(signal.SIGTERM, lambda *_: pool.stop())
    console.print(f"worker {pool.id}: {concurrency} job(s) at once, database {_safe(settings.database_url)}")
    try:
        pool.run()
    except KeyboardInterrupt:
        pool.stop()


EXPIRES = typer.Option(None, "--expires-in", help="The key stops working after this long: 30d, 12h, 45m or seconds.")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str | None) -> float | None:
    """``30d``, ``12h``, ``45m``, ``90s`` or a number of seconds, in seconds."""
    if text is None:
        return None
    number, unit = (text[:-1], text[-1]) if text and text[-1] in UNITS else (text, "s")
    try:
        return float(number) * UNITS[unit]
    except ValueError:
        raise ConfigError(f"--expires-in {text!r} is not a duration", field="expires_in",
                          hint="e.g. 30d, 12h, 45m or 3600 (seconds)") from None


def _open(database_url: Optional[str]):
    from tuneforge.services.platform import open_platform
    from tuneforge.settings import Settings

    return open_platform(Settings.from_env(database_url=database_url or None))


@keys_app.command("create")
def keys_create(
    project: str = typer.Option("admin", "--project", help="The project the key acts for."),
    admin: bool = typer.Option(False, "--admin", help="Also allow the admin routes (keys, global figures)."),
    expires_in: Optional[str] = EXPIRES,
    database_url: Optional[str] = DB,
) -> None:
    """Create an API key; it is printed once (only its hash is stored)."""
    from tuneforge.services.platform import create_api_key

    if project == "admin" and not admin:
        raise ConfigError("--project is required (unless --admin)", field="project",
                          hint="tuneforge keys create --project NAME")
    platform = _open(database_url)
    try:
        key = create_api_key(platform, project=project, admin=admin, expires_in=parse_duration(expires_in))
    finally:
        platform.close()
    print(key)


@keys_app.command("list")
def keys_list(
    project: Optional[str] = typer.Option(None, "--project", help="Only this project's keys."),
    database_url: Optional[str] = DB,
) -> None:
    """List keys: id, prefix, project, admin, created, last used, expiry and revocation."""
    from tuneforge.services.platform import list_api_keys

    platform = _open(database_url)
    try:
        records = list_api_keys(platform, project=project)
    finally:
        platform.close()
    print("id\tprefix\tproject\tadmin\tcreated\tlast_used\texpires\tstatus")
    for r in records:
        state = r.refusal(time.time()) or "active"
        print("\t".join([r.id, r.prefix, r.project, "yes" if r.is_admin else "no", _when(r.created_at),
                         _when(r.last_used_at), _when(r.expires_at), state]))


@keys_app.command("revoke")
def keys_revoke(key_id: str = typer.Argument(..., help="The key's id (see 'tuneforge keys list')."),
                database_url: Optional[str] = DB) -> None:
    """Revoke a key: it answers 401 from its next request on."""
    from tuneforge.services.platform import revoke_api_key

    platform = _open(database_url)
    try:
        record = revoke_api_key(platform, key_id)
    finally:
        platform.close()
    console.print(f"revoked {record.id} (project {record.project})")


@keys_app.command("rotate")
def keys_rotate(key_id: str = typer.Argument(..., help="The key's id (see 'tuneforge keys list')."),
                expires_in: Optional[str] = EXPIRES, database_url: Optional[str] = DB) -> None:
    """Replace a key: prints a new key for the same project and revokes the old one."""
    from tuneforge.services.platform import rotate_api_key

    platform = _open(database_url)
    try:
        key = rotate_api_key(platform, key_id, expires_in=parse_duration(expires_in))
    finally:
        platform.close()
    print(key)


@admin_app.command("gc")
def admin_gc(
    dry_run: bool = typer.Option(False, "--dry-run", help="Report what would be freed; delete nothing."),
    grace: float = typer.Option(600.0, "--grace", help="Spare anything modified in the last SECONDS."),
    database_url: Optional[str] = DB,
    home: Optional[str] = HOME,
) -> None:
    """Report and free orphaned bytes: stale uploads, artifacts no file points at, folders of deleted jobs."""
    from tuneforge.services.disk import collect_garbage
    from tuneforge.services.platform import open_platform
    from tuneforge.settings import Settings

    platform = open_platform(Settings.from_env(database_url=database_url or None, home=home or None))
    try:
        report = collect_garbage(platform, dry_run=dry_run, grace_seconds=grace)
    finally:
        platform.close()
    verb = "freed" if report.freed else "would free"
    for category, paths in report.found.items():
        print(f"{category}: {len(paths)} ({report.bytes[category]} bytes)")
    print(f"{verb} {report.total_bytes} bytes")


def _when(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp)) if stamp else "-"


def _safe(url: str) -> str:
    """A database URL without its password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url
