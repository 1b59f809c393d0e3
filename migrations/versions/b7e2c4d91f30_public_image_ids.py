"""gallery pictures under their public id (a hash of the path), the same as in the index and the API

Revision ID: b7e2c4d91f30
Revises: 6abc911eabb1
Create Date: 2026-11-25 22:00:00

The gallery_images table is derived from the index (the app syncs it at start-up), so it is made anew;
the history's references to gallery pictures are translated from the old row numbers to public ids.
"""
from alembic import op
import sqlalchemy as sa

from indexer.ids import image_id

revision = 'b7e2c4d91f30'
down_revision = '6abc911eabb1'
branch_labels = None
depends_on = None


def _translate_history(conn, path_of_old_id):
    searches = sa.table('searches', sa.column('id', sa.Integer), sa.column('gallery_image_id', sa.BigInteger),
                        sa.column('results', sa.JSON))
    for row in conn.execute(sa.select(searches.c.id, searches.c.gallery_image_id, searches.c.results)).all():
        path = path_of_old_id(row.gallery_image_id)
        results = [dict(r, id=image_id(r["path"])) for r in (row.results or []) if isinstance(r, dict) and "path" in r]
        conn.execute(searches.update().where(searches.c.id == row.id).values(
            gallery_image_id=image_id(path) if path else None, results=results))


def upgrade():
    conn = op.get_bind()
    old = {i: p for i, p in conn.execute(sa.text("SELECT id, path FROM gallery_images")).all()}
    with op.batch_alter_table('searches', schema=None) as batch_op:
        batch_op.alter_column('gallery_image_id', type_=sa.BigInteger(), existing_type=sa.Integer(),
                              existing_nullable=True)
    _translate_history(conn, old.get)
    with op.batch_alter_table('gallery_images', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_gallery_images_sha256'))
        batch_op.drop_index(batch_op.f('ix_gallery_images_path'))
    op.drop_table('gallery_images')
    op.create_table('gallery_images',
    sa.Column('id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('path', sa.String(length=1024), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('added_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('gallery_images', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_gallery_images_path'), ['path'], unique=True)
        batch_op.create_index(batch_op.f('ix_gallery_images_sha256'), ['sha256'], unique=False)


def downgrade():
    # Public ids are not row numbers: history keeps no gallery reference after a downgrade.
    conn = op.get_bind()
    conn.execute(sa.text("UPDATE searches SET gallery_image_id = NULL"))
    conn.execute(sa.text("DELETE FROM gallery_images"))
    with op.batch_alter_table('searches', schema=None) as batch_op:
        batch_op.alter_column('gallery_image_id', type_=sa.Integer(), existing_type=sa.BigInteger(),
                              existing_nullable=True)
    with op.batch_alter_table('gallery_images', schema=None) as batch_op:
        batch_op.alter_column('id', type_=sa.Integer(), existing_type=sa.BigInteger(), autoincrement=True)
