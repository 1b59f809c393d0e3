"""gallery_sync: the index generation the gallery table reflects, so that start-up syncs only what changed

Revision ID: b9d1f3a5c7e9
Revises: a8c0e2f4b6d8
Create Date: 2026-12-01 20:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = 'b9d1f3a5c7e9'
down_revision = 'a8c0e2f4b6d8'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('gallery_sync',
                    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
                    sa.Column('generation', sa.String(length=64), nullable=False),
                    sa.Column('base', sa.String(length=64), nullable=False),
                    sa.Column('segments', sa.JSON(), nullable=False),
                    sa.PrimaryKeyConstraint('id'))


def downgrade():
    op.drop_table('gallery_sync')
