"""login sessions (one token per sign-in, revoked at sign-out) and the first-account claim

Revision ID: c3d5e8f0a2b4
Revises: b7e2c4d91f30
Create Date: 2026-11-25 22:10:00

Existing sessions and remember-me cookies carried the user id; they stop working, so everyone signs in once
more. An existing administrator counts as the first account.
"""
from alembic import op
import sqlalchemy as sa

revision = 'c3d5e8f0a2b4'
down_revision = 'b7e2c4d91f30'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('login_sessions',
    sa.Column('token', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('token')
    )
    with op.batch_alter_table('login_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_login_sessions_user_id'), ['user_id'], unique=False)
    op.create_table('first_account',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    conn = op.get_bind()
    first = conn.execute(sa.text("SELECT min(id) FROM users WHERE is_admin = :yes"), {"yes": True}).scalar()
    if first is not None:
        conn.execute(sa.text("INSERT INTO first_account (id, user_id) VALUES (1, :u)"), {"u": first})


def downgrade():
    op.drop_table('first_account')
    with op.batch_alter_table('login_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_login_sessions_user_id'))
    op.drop_table('login_sessions')
