"""photo metadata on gallery rows: capture time, camera, lens, exposure, size, orientation, optional position

Revision ID: e5a7c9d1f3b6
Revises: d4f6a8b0c2e5
Create Date: 2026-11-26 00:50:00
"""
import sqlalchemy as sa
from alembic import op

revision = 'e5a7c9d1f3b6'
down_revision = 'd4f6a8b0c2e5'
branch_labels = None
depends_on = None

COLUMNS = [
    ('taken_at', sa.DateTime()),
    ('time_from_exif', sa.Boolean()),
    ('camera', sa.String(length=120)),
    ('lens', sa.String(length=120)),
    ('exposure', sa.String(length=20)),
    ('aperture', sa.Float()),
    ('iso', sa.Integer()),
    ('focal_length', sa.Float()),
    ('width', sa.Integer()),
    ('height', sa.Integer()),
    ('orientation', sa.String(length=10)),
    ('latitude', sa.Float()),
    ('longitude', sa.Float()),
]
INDEXED = ('taken_at', 'camera', 'orientation')


def upgrade():
    with op.batch_alter_table('gallery_images', schema=None) as batch_op:
        for name, kind in COLUMNS:
            batch_op.add_column(sa.Column(name, kind, nullable=True))
        for name in INDEXED:
            batch_op.create_index(f'ix_gallery_images_{name}', [name], unique=False)


def downgrade():
    with op.batch_alter_table('gallery_images', schema=None) as batch_op:
        for name in INDEXED:
            batch_op.drop_index(f'ix_gallery_images_{name}')
        for name, _ in reversed(COLUMNS):
            batch_op.drop_column(name)
