"""The tables, as SQLAlchemy Core sees them. Migrations (``storage/migrations``) create and evolve them.

Change a table here and in a new migration together: ``tests/contract/test_migrations.py`` fails when
autogenerate finds a difference between this metadata and a database migrated to head.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON, BigInteger, Boolean, Column, Float, ForeignKey, Index, Integer, MetaData, String, Table, Text,
    UniqueConstraint, false,
)

metadata = MetaData()
# SQLite autoincrements only INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
SeqType = BigInteger().with_variant(Integer(), "sqlite")

api_keys = Table(
    "api_keys", metadata,
    Column("key_hash", String(64), primary_key=True),
    Column("prefix", String(16), nullable=False),
    Column("project", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float),  # 0005
    Column("disabled_at", Float),  # 0005
    Column("last_used_at", Float),  # 0005
    Column("is_admin", Boolean, nullable=False, server_default=false()),  # 0005
)

files = Table(
    "files", metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("project", String(64), nullable=False, index=True),
    Column("filename", String(512), nullable=False),
    Column("purpose", String(32), nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("status_details", Text),
    Column("created_at", Float, nullable=False),
)

datasets = Table(
    "datasets", metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("project", String(64), nullable=False, index=True),
    Column("name", String(256), nullable=False),
    Column("file_id", String(64), nullable=False),
    Column("format", String(32)),
    Column("examples", Integer),
    Column("created_at", Float, nullable=False),
)

jobs = Table(
    "jobs", metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("project", String(64), nullable=False, index=True),
    Column("status", String(24), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("model", String(512), nullable=False),
    Column("training_file", String(64)),
    Column("validation_file", String(64)),
    Column("config", JSON, nullable=False),
    Column("request", JSON, nullable=False),
    Column("seed", BigInteger, nullable=False),
    Column("fine_tuned_model", String(512)),
    Column("trained_tokens", BigInteger),
    Column("result_files", JSON, nullable=False),
    Column("error", JSON),
    Column("progress", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("worker_id", String(128)),
    Column("heartbeat_at", Float),
    Column("attempts", Integer, nullable=False),
    Column("control", String(16)),
    Column("kind", String(32), nullable=False, server_default="train"),  # 0002
    Column("result", JSON),  # 0002
    Column("claimed_at", Float),  # 0005: the latest claim (fair claims serve the project served longest ago)
    Index("ix_jobs_claim", "status", "priority", "seq"),
)

job_events = Table(
    "job_events", metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("job_id", String(64), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("level", String(8), nullable=False),
    Column("type", String(16), nullable=False),
    Column("message", Text, nullable=False),
    Column("data", JSON),
    Column("created_at", Float, nullable=False),
)

job_metrics = Table(
    "job_metrics", metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("job_id", String(64), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("step", Integer, nullable=False),
    Column("data", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
)

# A job has at most one checkpoint per step; SqlStore.add_checkpoint relies on this constraint's name.
uq_checkpoints_job_step = UniqueConstraint("job_id", "step", name="uq_checkpoints_job_step")

checkpoints = Table(
    "checkpoints", metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("job_id", String(64), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("step", Integer, nullable=False),
    Column("path", Text, nullable=False),
    Column("metrics", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    uq_checkpoints_job_step,
)

models = Table(
    "models", metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(512), nullable=False, unique=True),
    Column("project", String(64), nullable=False, index=True),
    Column("job_id", String(64), nullable=False),
    Column("base_model", String(512), nullable=False),
    Column("path", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)

# --- the model registry (0003) ------------------------------------------------------------------------------
registered_models = Table(
    "registered_models", metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("project", String(64), nullable=False),
    Column("name", String(128), nullable=False),
    Column("latest_version", Integer, nullable=False),  # the counter that numbers versions (row-locked)
    Column("created_by", String(128), nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("project", "name", name="uq_registered_models_project_name"),
)

model_versions = Table(
    "model_versions", metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("project", String(64), nullable=False),
    Column("name", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("artifact_path", Text, nullable=False),
    Column("artifact_sha256", String(64), nullable=False, index=True),
    Column("base_model", Text, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("source", JSON, nullable=False),
    Column("config", JSON, nullable=False),
    Column("dataset_sha256", String(64), index=True),
    Column("scores", JSON, nullable=False),
    Column("job_id", String(64), index=True),
    Column("fine_tuned_model", String(512), index=True),
    Column("parent_version", Integer),
    Column("status", String(16), nullable=False),
    Column("pruned_at", Float),
    Column("created_by", String(128), nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("project", "name", "version", name="uq_model_versions_project_name_version"),
)

model_aliases = Table(
    "model_aliases", metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("project", String(64), nullable=False),
    Column("name", String(128), nullable=False),
    Column("alias", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("updated_by", String(128), nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("weights", JSON),  # 0006: an A/B split's [[version, weight], ...]
    UniqueConstraint("project", "name", "alias", name="uq_model_aliases_project_name_alias"),
)

model_alias_moves = Table(
    "model_alias_moves", metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("project", String(64), nullable=False),
    Column("name", String(128), nullable=False),
    Column("alias", String(64), nullable=False),
    Column("from_version", Integer),
    Column("to_version", Integer),
    Column("action", String(16), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("weights", JSON),  # 0006
    Index("ix_model_alias_moves_model", "project", "name", "alias"),
)

# Versioned training data (``tuneforge data``): a named data set per project and its immutable versions, each a
# content-addressed JSONL artifact. Distinct from ``datasets`` above (the OpenAI-style uploads with a format).
uq_data_sets_project_name = UniqueConstraint("project", "name", name="uq_data_sets_project_name")
uq_data_versions_number = UniqueConstraint("dataset_id", "version", name="uq_data_versions_number")

data_sets = Table(
    "data_sets", metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("project", String(64), nullable=False),
    Column("name", String(256), nullable=False),
    Column("created_at", Float, nullable=False),
    uq_data_sets_project_name,
)

data_versions = Table(
    "data_versions", metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("dataset_id", String(64), ForeignKey("data_sets.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("version", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("format", String(32), nullable=False),
    Column("records", Integer, nullable=False),
    Column("stats", JSON, nullable=False),
    Column("parent_id", String(64)),  # a version of this or another data set (a split's parent)
    Column("operation", String(16), nullable=False),
    Column("params", JSON, nullable=False),
    Column("details", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    uq_data_versions_number,
    UniqueConstraint("dataset_id", "sha256", name="uq_data_versions_content"),
)

# --- served traffic (0006): the request log and feedback on responses (A/B reports, ``data collect``) ----------
served_requests = Table(
    "served_requests", metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("project", String(64), nullable=False),
    Column("model", String(512), nullable=False),
    Column("name", String(128)),
    Column("alias", String(64)),
    Column("version", Integer),
    Column("variant", String(512), nullable=False),
    Column("user_id", String(256)),
    Column("status", String(16), nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("prompt_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    Column("prompt", JSON),
    Column("answer", Text),
    Column("created_at", Float, nullable=False),
    Index("ix_served_requests_model", "project", "name", "created_at"),
)

request_feedback = Table(
    "request_feedback", metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("request_id", String(64), ForeignKey("served_requests.id", ondelete="CASCADE"), nullable=False,
           index=True),
    Column("project", String(64), nullable=False),
    Column("score", Float, nullable=False),
    Column("label", String(8)),
    Column("correction", Text),
    Column("created_at", Float, nullable=False),
)
