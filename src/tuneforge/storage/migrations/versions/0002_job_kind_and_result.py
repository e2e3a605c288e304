"""jobs: kind and result

A job has a ``kind`` (``train``, ``evaluate``, ``compress``, ...; registered by services); jobs created
before this revision were all fine-tuning jobs, so the column defaults to ``train``. ``result`` holds what
a finished job produced, as its kind reports it.

No index for the claim by kind: the claim reads queued jobs through ``ix_jobs_claim`` (status, priority,
seq) in claim order and stops at the first of a wanted kind. The queued set is small, and a worker of
every kind (the usual case) matches the first row; an index on (status, kind, priority, seq) would only
help a worker restricted to a rare kind behind a long queue of other kinds, at a cost on every write.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=32), server_default='train', nullable=False))
        batch_op.add_column(sa.Column('result', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('result')
        batch_op.drop_column('kind')
