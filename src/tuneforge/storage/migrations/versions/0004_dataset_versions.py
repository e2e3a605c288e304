"""data sets and their versions

Versioned training data (``tuneforge data``): ``data_sets`` names a data set per project; ``data_versions``
holds its immutable versions, each a JSONL artifact named by the sha256 of its normalized records, with its
lineage (parent version, operation, parameters, what the operation removed). A data set never holds the same
content twice (``uq_data_versions_content``).

Revision ID: 0004
Revises: 0002
Create Date: 2026-12-03 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'data_sets',
        sa.Column('seq', SEQ, autoincrement=True, nullable=False),
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('project', sa.String(length=64), nullable=False),
        sa.Column('name', sa.String(length=256), nullable=False),
        sa.Column('created_at', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('seq'),
        sa.UniqueConstraint('id'),
        sa.UniqueConstraint('project', 'name', name='uq_data_sets_project_name'),
    )
    op.create_table(
        'data_versions',
        sa.Column('seq', SEQ, autoincrement=True, nullable=False),
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('dataset_id', sa.String(length=64), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('format', sa.String(length=32), nullable=False),
        sa.Column('records', sa.Integer(), nullable=False),
        sa.Column('stats', sa.JSON(), nullable=False),
        sa.Column('parent_id', sa.String(length=64), nullable=True),
        sa.Column('operation', sa.String(length=16), nullable=False),
        sa.Column('params', sa.JSON(), nullable=False),
        sa.Column('details', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(['dataset_id'], ['data_sets.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('seq'),
        sa.UniqueConstraint('id'),
        sa.UniqueConstraint('dataset_id', 'version', name='uq_data_versions_number'),
        sa.UniqueConstraint('dataset_id', 'sha256', name='uq_data_versions_content'),
    )
    op.create_index(op.f('ix_data_versions_dataset_id'), 'data_versions', ['dataset_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_data_versions_dataset_id'), table_name='data_versions')
    op.drop_table('data_versions')
    op.drop_table('data_sets')
