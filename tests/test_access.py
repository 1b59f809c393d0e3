"""Whose gallery is it: private by default, sign-up by invitation, throttled sign-in, account management,
hardened responses and the audit trail."""
import io
import time
from datetime import datetime, timedelta, timezone

import pytest

from app.config import load_config
from indexer.ids import image_id
from tests.helpers import csrf_headers, form_token, make_app, sign_in, sign_up
from tests.images import skimage_photo

PUBLIC = {"static", "auth.login", "auth.signup", "api.health", "api.csrf_token"}
PAGES_UNDER_API = {"api.docs"}  # the API reference page: sent to sign in like every page
ARGS = {"path": "coffee.png", "name": "0" * 32 + ".jpg", "search_id": 1, "user_id": 1, "token": "x", "filename": "x", "n": 0,
        "key_id": 1}


@pytest.fixture
def private(gallery_dirs, tmp_path, weights_path, request):
    """An app with the production defaults for access: private, sign-up by invitation."""
    overrides = {"ACCESS": "private", "SIGNUP": "invite", **getattr(request, "param", {})}
    return make_app(gallery_dirs, tmp_path, weights_path, **overrides)


def test_defaults_are_private_with_sign_up_by_invitation(monkeypatch):
    for name in ("ACCESS", "SIGNUP", "THROTTLE"):
        monkeypatch.delenv(name, raising=False)
    cfg = load_config()
    assert cfg["ACCESS"] == "private" and cfg["SIGNUP"] == "invite" and cfg["THROTTLE"] is True
    assert cfg["SESSION_COOKIE_HTTPONLY"] and cfg["SESSION_COOKIE_SAMESITE"] == "Lax"


def test_private_mode_refuses_every_route_to_strangers(private):
    """Walks the whole URL map, so that a route added later cannot slip through unprotected."""
    client = private.test_client()
    adapter = private.url_map.bind("localhost")
    checked = 0
    for rule in private.url_map.iter_rules():
        if rule.endpoint in PUBLIC:
            continue
        url = adapter.build(rule.endpoint, {a: ARGS.get(a, "x") for a in rule.arguments})
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            r = client.open(url, method=method, headers=csrf_headers(client))
            if url.startswith("/api/") and rule.endpoint not in PAGES_UNDER_API:
                assert r.status_code == 401 and r.get_json()["error"]["code"] == "unauthorized", (method, url)
            else:
                assert r.status_code == 302 and "/auth/login" in r.headers["Location"], (method, url, r.status_code)
            checked += 1
    assert checked >= 25
    health = client.get("/api/health")
    assert health.status_code == 200 and health.get_json() == {"status": "ok"}
    assert client.get("/auth/login").status_code == 200 and client.get("/static/css/app.css").status_code == 200


def test_first_account_then_invitations_only(private):
    first = private.test_client()
    assert first.get("/auth/signup").status_code == 200  # nobody yet: the first account is free
    sign_up(first, "owner@example.com")
    assert first.get("/api/gallery").status_code == 200
    stranger = private.test_client()
    assert stranger.get("/auth/signup").status_code == 403
    assert "Create an account" not in stranger.get("/auth/login").get_data(as_text=True)
    r = first.post("/api/admin/invitations", json={"days": 2}, headers=csrf_headers(first))
    assert r.status_code == 201
    url = r.get_json()["url"].replace("http://localhost", "")
    page = stranger.get(url)
    assert page.status_code == 200
    token = form_token(page.get_data(as_text=True))
    data = {"email": "guest@example.com", "password": "guest password!", "confirm": "guest password!", "csrf_token": token}
    assert stranger.post(url, data=data).status_code == 302
    assert stranger.get("/api/gallery").status_code == 200
    again = private.test_client()
    assert again.get(url).status_code == 403  # used up
    r = first.post("/api/admin/invitations", json={"days": 1}, headers=csrf_headers(first))
    from app.extensions import db
    from app.storage.models import Invitation
    with private.app_context():
        row = db.session.get(Invitation, r.get_json()["token"])
        row.expires_at = datetime.now(timezone.utc) - timedelta(minutes=1)
        db.session.commit()
    assert private.test_client().get(r.get_json()["url"].replace("http://localhost", "")).status_code == 403
    users = first.get("/api/admin/users").get_json()["items"]
    assert [(u["email"], u["is_admin"]) for u in users] == [("owner@example.com", True), ("guest@example.com", False)]


@pytest.mark.parametrize("private", [{"SIGNUP": "closed"}], indirect=True)
def test_closed_sign_up_refuses_even_invitations(private):
    owner = private.test_client()
    sign_up(owner, "owner@example.com")
    url = owner.post("/api/admin/invitations", json={}, headers=csrf_headers(owner)).get_json()["url"]
    assert private.test_client().get(url.replace("http://localhost", "")).status_code == 403


@pytest.mark.parametrize("private", [{"THROTTLE": True, "SIGNIN_LIMIT": "3 per 2 second", "TRUSTED_PROXIES": 1}],
                         indirect=True)
def test_sign_in_is_throttled_per_address_and_per_account(private):
    owner = private.test_client()
    sign_up(owner, "owner@example.com")
    attacker = private.test_client()
    statuses = [sign_in(attacker, "owner@example.com", "wrong password").status_code for _ in range(4)]
    assert statuses == [400, 400, 400, 429]
    r = sign_in(attacker, "owner@example.com", "wrong password")
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1 and "Too many attempts" in r.get_data(as_text=True)
    time.sleep(2.2)  # the window passes: the right password gets in
    assert sign_in(attacker, "owner@example.com").status_code == 302
    # many addresses against one account: the per-account limit stops them too
    time.sleep(2.2)
    spread = [sign_in(private.test_client(), "owner@example.com", "wrong password",
                      HTTP_X_FORWARDED_FOR=f"203.0.113.{i}").status_code for i in range(4)]
    assert spread == [400, 400, 400, 429]


def test_accounts_are_managed_and_the_last_admin_is_kept(private):
    owner = private.test_client()
    sign_up(owner, "owner@example.com")
    headers = csrf_headers(owner)
    link = owner.post("/api/admin/invitations", json={}, headers=headers).get_json()["url"].replace("http://localhost", "")
    guest = private.test_client()
    page = guest.get(link).get_data(as_text=True)
    token = form_token(page)
    guest.post(link, data={"email": "guest@example.com", "password": "guest password!", "confirm": "guest password!",
                           "csrf_token": token})
    users = {u["email"]: u["id"] for u in owner.get("/api/admin/users").get_json()["items"]}
    r = owner.patch(f"/api/admin/users/{users['owner@example.com']}", json={"is_admin": False}, headers=headers)
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "last_admin"
    assert owner.patch(f"/api/admin/users/{users['guest@example.com']}", json={"disabled": True},
                       headers=headers).status_code == 200
    assert guest.get("/api/gallery").status_code == 401  # a disabled account's sign-in ends at once
    assert sign_in(private.test_client(), "guest@example.com", "guest password!").status_code == 400
    assert owner.patch(f"/api/admin/users/{users['guest@example.com']}", json={"disabled": False, "is_admin": True},
                       headers=headers).get_json() == {"id": users["guest@example.com"], "email": "guest@example.com",
                                                       "is_admin": True, "disabled": False}
    assert owner.delete(f"/api/admin/users/{users['guest@example.com']}", headers=headers).status_code == 200
    assert [u["email"] for u in owner.get("/api/admin/users").get_json()["items"]] == ["owner@example.com"]
    assert private.test_client().get("/api/admin/users").status_code == 401


def test_users_change_their_password_and_delete_their_account(private):
    owner = private.test_client()
    sign_up(owner, "owner@example.com")
    elsewhere = private.test_client()
    assert sign_in(elsewhere, "owner@example.com").status_code == 302
    r = owner.post("/api/search", data={"image": (io.BytesIO(open(skimage_photo("coffee.png"), "rb").read()), "q.png")},
                   headers=csrf_headers(owner), content_type="multipart/form-data")
    upload = owner.get("/api/history").get_json()["items"][0]["query_url"]
    assert owner.get(upload).status_code == 200
    token = form_token(owner.get("/account").get_data(as_text=True), "pw-")
    r = owner.post("/account", data={"pw-csrf_token": token, "pw-current": "correct horse battery",
                                     "pw-password": "a new long password", "pw-confirm": "a new long password",
                                     "pw-submit": "Change password"})
    assert r.status_code == 302
    assert elsewhere.get("/api/history").status_code == 401  # other browsers are signed out
    assert owner.get("/api/history").status_code == 200
    token = form_token(owner.get("/account").get_data(as_text=True), "del-")
    r = owner.post("/account", data={"del-csrf_token": token, "del-confirm_password": "a new long password",
                                     "del-delete": "Delete"})
    assert r.status_code == 400  # the last administrator cannot leave
    assert sign_in(private.test_client(), "owner@example.com", "a new long password").status_code == 302


def test_deleting_an_account_removes_its_history_and_pictures(gallery_dirs, tmp_path, weights_path):
    import os
    app = make_app(gallery_dirs, tmp_path, weights_path)
    sign_up(app.test_client(), "owner@example.com")
    user = app.test_client()
    sign_up(user, "user@example.com")
    user.post("/api/search", data={"image": (io.BytesIO(open(skimage_photo("coffee.png"), "rb").read()), "q.png")},
              headers=csrf_headers(user), content_type="multipart/form-data")
    name = user.get("/api/history").get_json()["items"][0]["query_url"].rsplit("/", 1)[1]
    assert os.path.exists(os.path.join(app.config["UPLOAD_DIR"], name))
    token = form_token(user.get("/account").get_data(as_text=True), "del-")
    r = user.post("/account", data={"del-csrf_token": token, "del-confirm_password": "correct horse battery",
                                    "del-delete": "Delete"})
    assert r.status_code == 302 and not os.path.exists(os.path.join(app.config["UPLOAD_DIR"], name))
    assert sign_in(app.test_client(), "user@example.com").status_code == 400


@pytest.mark.parametrize("private", [{"TRUSTED_PROXIES": 1}], indirect=True)
def test_every_response_is_hardened(private):
    client = private.test_client()
    sign_up(client, "owner@example.com")
    for url in ("/", "/sketch", "/gallery", "/history", "/admin/gallery", "/account", "/api/gallery",
                "/thumbs/coffee.png", "/media/gallery/coffee.png", "/static/js/common.js", "/nowhere"):
        r = client.get(url)
        assert "script-src 'self'" in r.headers["Content-Security-Policy"], url
        assert "'unsafe-inline'" not in r.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
        assert r.headers["X-Content-Type-Options"] == "nosniff" and r.headers["Referrer-Policy"] == "same-origin"
    assert client.get("/media/gallery/coffee.png").headers["Content-Type"] == "image/png"
    fresh = private.test_client()
    cookie = fresh.get("/auth/login").headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    cookie = fresh.get("/auth/login", headers={"X-Forwarded-Proto": "https"}).headers["Set-Cookie"]
    assert "Secure" in cookie
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    r = client.post("/api/admin/images", data={"images": [(io.BytesIO(svg), "x.svg")]}, headers=csrf_headers(client),
                    content_type="multipart/form-data")
    assert r.status_code == 422 and r.get_json()["rejected"][0]["code"] == "unsupported_media_type"


def test_the_audit_trail_records_each_action(site, tmp_path, weights_path):  # it changes the gallery
    private = make_app(site, tmp_path, weights_path, ACCESS="private", SIGNUP="invite")
    owner = private.test_client()
    sign_up(owner, "owner@example.com")
    headers = csrf_headers(owner)
    sign_in(private.test_client(), "owner@example.com", "wrong password")
    sign_in(private.test_client(), "owner@example.com")
    photo = open(skimage_photo("retina.jpg"), "rb").read()
    added = owner.post("/api/admin/images", data={"images": [(io.BytesIO(photo), "retina.jpg")]}, headers=headers,
                       content_type="multipart/form-data").get_json()["added"]
    owner.delete("/api/admin/images", json={"ids": [added[0]["id"]]}, headers=headers)
    assert added[0]["id"] == image_id(added[0]["path"])
    owner.post("/api/admin/invitations", json={}, headers=headers)
    items = owner.get("/api/admin/audit").get_json()["items"]
    actions = [e["action"] for e in reversed(items)]
    assert actions == ["sign_up", "sign_in_failed", "sign_in", "gallery_upload", "gallery_delete", "invitation_created"]
    assert all(e["email"] == "owner@example.com" and e["address"] == "127.0.0.1" for e in items)
    assert items[2]["detail"]["paths"] == [added[0]["path"]]
