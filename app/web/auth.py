"""Sign up, sign in and sign out. The first account becomes the administrator; after that the sign-up policy
(``SIGNUP``: open, invite or closed) decides. Sign-in and sign-up are throttled per address, sign-in also per
account; every attempt goes to the audit trail."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import BooleanField, EmailField, PasswordField, SubmitField
from wtforms.validators import DataRequired, Email, EqualTo, Length, ValidationError

from ..extensions import db, login_manager, throttle
from ..services.errors import InvalidInput
from ..storage import audit
from ..storage.accounts import (
    AccountExists,
    authenticate,
    close_session,
    create_account,
    has_accounts,
    normalise_email,
    open_session,
    user_for_session,
    valid_invitation,
)
from ..storage.models import User

TAKEN = "This email cannot be used for a new account; if it is yours, sign in."

bp = Blueprint("auth", __name__, url_prefix="/auth")
login_manager.login_view = "auth.login"
login_manager.login_message_category = "info"


@login_manager.user_loader
def load_user(token: str) -> User | None:
    return user_for_session(token)


class SignUpForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Email(check_deliverability=False), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(min=8, max=200)])
    confirm = PasswordField("Repeat password", validators=[DataRequired(), EqualTo("password", "Passwords differ.")])
    submit = SubmitField("Create account")

    def validate_email(self, field) -> None:
        if db.session.scalar(select(User.id).where(User.email == normalise_email(field.data))):
            raise ValidationError(TAKEN)


class SignInForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Email(check_deliverability=False)])
    password = PasswordField("Password", validators=[DataRequired()])
    remember = BooleanField("Keep me signed in")
    submit = SubmitField("Sign in")


def _safe_next(target: str | None) -> str:
    """Only same-site relative paths, so ?next= cannot send people elsewhere."""
    if target and target.startswith("/") and not target.startswith("//") and not urlsplit(target).netloc:
        return target
    return url_for("main.index")


def signup_allowed(invitation: str | None) -> bool:
    """Whether a new account may be made now: the first always; later ones as ``SIGNUP`` says."""
    policy = current_app.config["SIGNUP"]
    if not has_accounts() or policy == "open":
        return True
    return policy == "invite" and valid_invitation(invitation) is not None


def _account_key() -> str:
    """Throttle sign-ins per account as well as per address, so that many addresses cannot try one account."""
    return "account:" + normalise_email(request.form.get("email", ""))[:254]


@bp.route("/signup", methods=["GET", "POST"])
@throttle("SIGNUP_LIMIT", methods=["POST"])
def signup():
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    invitation = request.args.get("invite")
    if not signup_allowed(invitation):
        message = ("This invitation is not valid any more (used or expired); ask for a new one."
                   if invitation else "Sign-up is by invitation only: ask an administrator for a link.")
        abort(403, message)
    form = SignUpForm()
    if form.validate_on_submit():
        try:
            user = create_account(form.email.data, form.password.data,
                                  invitation if has_accounts() and current_app.config["SIGNUP"] != "open" else None)
        except AccountExists:
            form.email.errors.append(TAKEN)
        except InvalidInput as e:
            abort(403, e.message)
        else:
            audit.record("sign_up", user, admin=user.is_admin, invited=bool(invitation))
            login_user(open_session(user))
            flash("Welcome! Your searches are now kept in your history.", "success")
            return redirect(url_for("main.index"))
    return render_template("auth/signup.html", form=form), 200 if request.method == "GET" else 400


@bp.route("/login", methods=["GET", "POST"])
@throttle("SIGNIN_LIMIT", methods=["POST"])
@throttle("SIGNIN_LIMIT", methods=["POST"], key_func=_account_key)
def login():
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    form = SignInForm()
    if form.validate_on_submit():
        user = authenticate(form.email.data, form.password.data)
        if user is not None:
            login_user(open_session(user), remember=form.remember.data)
            audit.record("sign_in", user)
            return redirect(_safe_next(request.args.get("next")))
        audit.record("sign_in_failed", email=normalise_email(form.email.data)[:254])
        flash("Wrong email or password.", "danger")
    return render_template("auth/login.html", form=form, can_sign_up=signup_allowed(None)), \
        200 if request.method == "GET" else 400


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    audit.record("sign_out", current_user)
    close_session(current_user.get_id())
    logout_user()
    flash("You are signed out.", "info")
    return redirect(url_for("main.index"))
