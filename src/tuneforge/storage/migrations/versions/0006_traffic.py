"""traffic: A/B splits of an alias, the request log of the inference server, and feedback on responses

``model_aliases.weights`` / ``model_alias_moves.weights`` hold a split as ``[[version, weight], ...]``
(``version`` stays the split's control, so readers that know no splits see one version).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 13:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    for table in ('model_aliases', 'model_alias_moves'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('weights', sa.JSON(), nullable=True))
    op.create_table(
        'served_requests',
        sa.Column('seq', SEQ, primary_key=True, autoincrement=True),
        sa.Column('id', sa.String(64), nullable=False, unique=True),
        sa.Column('project', sa.String(64), nullable=False),
        sa.Column('model', sa.String(512), nullable=False),
        sa.Column('name', sa.String(128)),
        sa.Column('alias', sa.String(64)),
        sa.Column('version', sa.Integer()),
        sa.Column('variant', sa.String(512), nullable=False),
        sa.Column('user_id', sa.String(256)),
        sa.Column('status', sa.String(16), nullable=False),
        sa.Column('latency_ms', sa.Float(), nullable=False),
        sa.Column('prompt_tokens', sa.Integer(), nullable=False),
        sa.Column('completion_tokens', sa.Integer(), nullable=False),
        sa.Column('prompt', sa.JSON()),
        sa.Column('answer', sa.Text()),
        sa.Column('created_at', sa.Float(), nullable=False),
    )
    op.create_index('ix_served_requests_model', 'served_requests', ['project', 'name', 'created_at'])
    op.create_table(
        'request_feedback',
        sa.Column('seq', SEQ, primary_key=True, autoincrement=True),
        sa.Column('id', sa.String(64), nullable=False, unique=True),
        sa.Column('request_id', sa.String(64), sa.ForeignKey('served_requests.id', ondelete='CASCADE'),
                  nullable=False),
        sa.Column('project', sa.String(64), nullable=False),
        sa.Column('score', sa.Float(), nullable=False),
        sa.Column('label', sa.String(8)),
        sa.Column('correction', sa.Text()),
        sa.Column('created_at', sa.Float(), nullable=False),
    )
    op.create_index('ix_request_feedback_request_id', 'request_feedback', ['request_id'])


def downgrade() -> None:
    op.drop_index('ix_request_feedback_request_id', table_name='request_feedback')
    op.drop_table('request_feedback')
    op.drop_index('ix_served_requests_model', table_name='served_requests')
    op.drop_table('served_requests')
    for table in ('model_alias_moves', 'model_aliases'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('weights')
