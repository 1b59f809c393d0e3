"""the first-account claim outlives the account that made it

Revision ID: f6b8d0e2a4c7
Revises: e5a7c9d1f3b6
Create Date: 2026-12-01 15:40:00

Before, deleting the first account deleted its claim too (application code and the foreign key's cascade),
and the next sign-up became an administrator. The claim now has no foreign key and is never deleted. A
database whose claim was already freed that way, but which has accounts, gets it back (held by nobody).
"""
from alembic import op
import sqlalchemy as sa

revision = 'f6b8d0e2a4c7'
down_revision = 'e5a7c9d1f3b6'
branch_labels = None
depends_on = None


def upgrade():
    conn = op.get_bind()
    claimed = conn.execute(sa.text("SELECT user_id FROM first_account WHERE id = 1")).first()
    has_accounts = conn.execute(sa.text("SELECT count(*) FROM users")).scalar() > 0
    op.drop_table('first_account')
    op.create_table('first_account',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    if claimed is not None or has_accounts:
        conn.execute(sa.text("INSERT INTO first_account (id, user_id) VALUES (1, :u)"),
                     {"u": claimed[0] if claimed is not None else None})


def downgrade():
    conn = op.get_bind()
    claimed = conn.execute(sa.text("SELECT f.user_id FROM first_account f JOIN users u ON u.id = f.user_id "
                                   "WHERE f.id = 1")).first()
    op.drop_table('first_account')
    op.create_table('first_account',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    if claimed is not None:
        conn.execute(sa.text("INSERT INTO first_account (id, user_id) VALUES (1, :u)"), {"u": claimed[0]})
