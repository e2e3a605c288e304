"""model registry: registered models, their versions, aliases and every alias move

``registered_models.latest_version`` is the counter that numbers a model's versions: adding a version
increments it under the row's lock, so two registrations at once get two numbers. Alias moves lock the
same row, so concurrent moves of one model's aliases are recorded one after another.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('registered_models',
    sa.Column('seq', SEQ, autoincrement=True, nullable=False),
    sa.Column('project', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('latest_version', sa.Integer(), nullable=False),
    sa.Column('created_by', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('seq'),
    sa.UniqueConstraint('project', 'name', name='uq_registered_models_project_name')
    )
    op.create_table('model_versions',
    sa.Column('seq', SEQ, autoincrement=True, nullable=False),
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('project', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('artifact_path', sa.Text(), nullable=False),
    sa.Column('artifact_sha256', sa.String(length=64), nullable=False),
    sa.Column('base_model', sa.Text(), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('source', sa.JSON(), nullable=False),
    sa.Column('config', sa.JSON(), nullable=False),
    sa.Column('dataset_sha256', sa.String(length=64), nullable=True),
    sa.Column('scores', sa.JSON(), nullable=False),
    sa.Column('job_id', sa.String(length=64), nullable=True),
    sa.Column('fine_tuned_model', sa.String(length=512), nullable=True),
    sa.Column('parent_version', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('pruned_at', sa.Float(), nullable=True),
    sa.Column('created_by', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('seq'),
    sa.UniqueConstraint('id'),
    sa.UniqueConstraint('project', 'name', 'version', name='uq_model_versions_project_name_version')
    )
    with op.batch_alter_table('model_versions', schema=None) as batch_op:
        for column in ('artifact_sha256', 'dataset_sha256', 'job_id', 'fine_tuned_model'):
            batch_op.create_index(batch_op.f(f'ix_model_versions_{column}'), [column], unique=False)

    op.create_table('model_aliases',
    sa.Column('seq', SEQ, autoincrement=True, nullable=False),
    sa.Column('project', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('alias', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('updated_by', sa.String(length=128), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('seq'),
    sa.UniqueConstraint('project', 'name', 'alias', name='uq_model_aliases_project_name_alias')
    )
    op.create_table('model_alias_moves',
    sa.Column('seq', SEQ, autoincrement=True, nullable=False),
    sa.Column('project', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('alias', sa.String(length=64), nullable=False),
    sa.Column('from_version', sa.Integer(), nullable=True),
    sa.Column('to_version', sa.Integer(), nullable=True),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('actor', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('seq')
    )
    with op.batch_alter_table('model_alias_moves', schema=None) as batch_op:
        batch_op.create_index('ix_model_alias_moves_model', ['project', 'name', 'alias'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('model_alias_moves', schema=None) as batch_op:
        batch_op.drop_index('ix_model_alias_moves_model')
    op.drop_table('model_alias_moves')
    op.drop_table('model_aliases')
    with op.batch_alter_table('model_versions', schema=None) as batch_op:
        for column in ('fine_tuned_model', 'job_id', 'dataset_sha256', 'artifact_sha256'):
            batch_op.drop_index(batch_op.f(f'ix_model_versions_{column}'))
    op.drop_table('model_versions')
    op.drop_table('registered_models')
