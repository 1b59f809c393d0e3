"""API keys: named, hashed bearer keys of an account

Revision ID: a8c0e2f4b6d8
Revises: f6b8d0e2a4c7
Create Date: 2026-12-01 17:20:00

Scripts authenticate with ``Authorization: Bearer <key>``; only the key's SHA-256 is stored. Deleting an
account deletes its keys.
"""
from alembic import op
import sqlalchemy as sa

revision = 'a8c0e2f4b6d8'
down_revision = 'f6b8d0e2a4c7'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('api_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=60), nullable=False),
    sa.Column('prefix', sa.String(length=12), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key_hash')
    )
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_keys_user_id'), ['user_id'], unique=False)


def downgrade():
    # The table's indexes go with it (MariaDB refuses to drop the user_id index alone: its foreign key needs it).
    op.drop_table('api_keys')
