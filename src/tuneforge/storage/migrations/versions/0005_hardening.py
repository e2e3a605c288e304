"""hardening: API keys that expire, are revoked, record their last use, and admin keys

``expires_at`` / ``disabled_at`` make a key answer 401 at once; ``last_used_at`` is written at most once a
minute per key; ``is_admin`` keys may use the admin routes (keys of every project, global figures).

Job ownership needs no new column: ``jobs.attempts``, incremented by every claim, is the lease's fencing
token, and ``heartbeat_at`` + ``stale_after_seconds`` its expiry (see ``tuneforge.jobs.lease``).
``jobs.claimed_at`` (the latest claim) lets claims go round-robin across projects of equal priority.

Revision ID: 0005
Revises: 0002
Create Date: 2026-12-03 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expires_at', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('disabled_at', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('last_used_at', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('is_admin', sa.Boolean(), server_default=sa.false(), nullable=False))
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claimed_at', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('claimed_at')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_column('is_admin')
        batch_op.drop_column('last_used_at')
        batch_op.drop_column('disabled_at')
        batch_op.drop_column('expires_at')
