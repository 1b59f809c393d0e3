"""``flask`` commands: ``flask --app app make-admin EMAIL``."""
from __future__ import annotations

import click
from flask import Flask
from sqlalchemy import select

from .extensions import db
from .storage.accounts import normalise_email
from .storage.models import User


def register(app: Flask) -> None:
    @app.cli.command("make-admin")
    @click.argument("email")
    def make_admin(email: str) -> None:
        """Give an existing account the administrator role."""
        user = db.session.scalar(select(User).where(User.email == normalise_email(email)))
        if user is None:
            raise click.ClickException(f"no account with email {email}")
        user.is_admin = True
        db.session.commit()
        click.echo(f"{user.email} is now an administrator")
