"""Schema migrations on a database with data in it: what an existing deployment meets on upgrade."""
import pytest
from flask_migrate import upgrade
from sqlalchemy import text

from app import create_app
from app.extensions import db
from indexer.ids import image_id
from tests.helpers import database_id, database_urls, reset_database


def empty_database_app(tmp_path, database):
    """An app on an empty database (a new SQLite file, or the server's, emptied): no migration run yet."""
    url = f"sqlite:///{tmp_path / 'old.db'}" if database == "sqlite" else database
    app = create_app({"INSTANCE_DIR": str(tmp_path / "instance"), "MEDIA_DIR": str(tmp_path / "media"),
                      "SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "test-only-secret"})
    if database != "sqlite":
        with app.app_context():
            reset_database()
    return app


@pytest.mark.parametrize("database", database_urls(), ids=database_id)
def test_public_ids_migration_translates_history(tmp_path, database):
    app = empty_database_app(tmp_path, database)
    with app.app_context():
        upgrade(revision="6abc911eabb1")  # the schema before public ids: gallery rows numbered 1, 2, ...
        db.session.execute(text("INSERT INTO gallery_images (id, path, sha256, size, added_at) VALUES "
                                "(1, 'a.png', 'x', 1, CURRENT_TIMESTAMP), (2, 'sub/b.jpg', 'y', 2, CURRENT_TIMESTAMP)"))
        db.session.execute(text("INSERT INTO users (id, email, password_hash, is_admin, created_at) VALUES "
                                "(1, 'a@example.com', 'h', true, CURRENT_TIMESTAMP)"))
        db.session.execute(text(
            "INSERT INTO searches (id, user_id, created_at, mode, gallery_image_id, top_k, total_ms, timings, results) "
            "VALUES (1, 1, CURRENT_TIMESTAMP, 'gallery', 2, 2, 1.0, '{}', "
            "'[{\"id\": 2, \"path\": \"sub/b.jpg\", \"score\": 1.0}, {\"id\": 1, \"path\": \"a.png\", \"score\": 0.5}]')"))
        db.session.commit()
        upgrade()
        from app.storage.models import GalleryImage, Search
        search = db.session.get(Search, 1)
        assert search.gallery_image_id == image_id("sub/b.jpg") > 2**31
        assert [r["id"] for r in search.results] == [image_id("sub/b.jpg"), image_id("a.png")]
        assert db.session.query(GalleryImage).count() == 0  # derived from the index: synced at start-up
        db.session.add(GalleryImage(id=2**53 - 1, path="big.png", sha256="z", size=3))
        db.session.commit()
        assert db.session.get(GalleryImage, 2**53 - 1).path == "big.png"
        db.session.remove()
        db.engine.dispose()


@pytest.mark.parametrize("database", database_urls(), ids=database_id)
def test_migrations_make_the_models_schema_and_the_last_one_undoes(tmp_path, database):
    """The head revision is the schema the models describe (Alembic finds nothing to add), and the newest
    migration (API keys) goes down and up again."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from flask_migrate import downgrade
    app = empty_database_app(tmp_path, database)
    with app.app_context():
        upgrade()
        downgrade(revision="f6b8d0e2a4c7")
        assert "api_keys" not in db.inspect(db.engine).get_table_names()
        upgrade()
        with db.engine.connect() as connection:
            assert compare_metadata(MigrationContext.configure(connection), db.metadata) == []
        db.session.remove()
        db.engine.dispose()
