"""The signed-in user's own account: change the password, or delete the account with its history."""
from __future__ import annotations

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required, logout_user
from flask_wtf import FlaskForm
from wtforms import PasswordField, SubmitField
from wtforms.validators import DataRequired, EqualTo, Length

from ..services.errors import InvalidInput
from ..storage import audit
from ..storage.accounts import change_password, delete_account

bp = Blueprint("account", __name__, url_prefix="/account")


class PasswordForm(FlaskForm):
    current = PasswordField("Current password", validators=[DataRequired()])
    password = PasswordField("New password", validators=[DataRequired(), Length(min=8, max=200)])
    confirm = PasswordField("Repeat new password", validators=[DataRequired(), EqualTo("password", "Passwords differ.")])
    submit = SubmitField("Change password")


class DeleteForm(FlaskForm):
    confirm_password = PasswordField("Password", validators=[DataRequired()])
    delete = SubmitField("Delete my account and history")


@bp.route("", methods=["GET", "POST"])
@login_required
def page():
    password_form, delete_form = PasswordForm(prefix="pw"), DeleteForm(prefix="del")
    status = 200
    if request.method == "POST":
        status = 400
        if password_form.submit.data and password_form.validate():
            try:
                change_password(current_user, password_form.current.data, password_form.password.data)
            except InvalidInput as e:
                password_form.current.errors.append(e.message)
            else:
                audit.record("password_changed", current_user)
                flash("Your password is changed; other browsers are signed out.", "success")
                return redirect(url_for("account.page"))
        elif delete_form.delete.data and delete_form.validate():
            if not current_user.check_password(delete_form.confirm_password.data):
                delete_form.confirm_password.errors.append("The password is not right.")
            else:
                try:
                    user_id, email = current_user.id, current_user.email
                    delete_account(user_id, current_app.config["UPLOAD_DIR"])
                except InvalidInput as e:
                    delete_form.confirm_password.errors.append(e.message)
                else:
                    audit.record("account_deleted", email=email, user_id=user_id)
                    logout_user()
                    flash("Your account and its history are deleted.", "info")
                    return redirect(url_for("auth.login"))
    return render_template("account.html", password_form=password_form, delete_form=delete_form), status
