"""API keys for scripts: made on the account page and shown once, stored only as a hash, sent as
``Authorization: Bearer``; no CSRF token for them, 401 for a wrong, expired or revoked key or a disabled or
deleted account, roles as the account's, throttled per key, and named in the audit trail."""
import hashlib
import io
from datetime import datetime, timedelta, timezone

import pytest

from app.extensions import db
from app.storage.models import ApiKey
from tests.helpers import csrf_headers, form_token, make_app, post_search, sign_in, sign_up
from tests.images import skimage_photo

PHOTO = open(skimage_photo("coffee.png"), "rb").read()


@pytest.fixture
def private(gallery_dirs, tmp_path, weights_path, request):
    """A private gallery whose sign-up is open (so that tests can make a second account simply)."""
    return make_app(gallery_dirs, tmp_path, weights_path, ACCESS="private", SIGNUP="open",
                    **getattr(request, "param", {}))


def new_key(client, name="nightly", **fields) -> dict:
    r = client.post("/api/keys", json={"name": name, **fields}, headers=csrf_headers(client))
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def search_with(client, key: str):
    """A script's search: no cookies, no CSRF token, only the key."""
    return client.post("/api/search", data={"image": (io.BytesIO(PHOTO), "q.png"), "top_k": "3"},
                       headers=bearer(key), content_type="multipart/form-data")


def test_a_key_is_shown_once_and_stored_only_as_its_hash(private):
    owner = private.test_client()
    sign_up(owner, "owner@example.com")
    made = new_key(owner, "photo manager", days=30)
    key = made["key"]
    assert key.startswith("sbi_") and len(key) > 40 and made["name"] == "photo manager"
    assert made["prefix"] == key[:8] and made["last_used_at"] is None and not made["expired"]
    expires = datetime.fromisoformat(made["expires_at"])
    assert timedelta(days=29, hours=23) < expires - datetime.now(timezone.utc) <= timedelta(days=30)
    listed = owner.get("/api/keys").get_json()["items"]
    assert [k["id"] for k in listed] == [made["id"]] and "key" not in listed[0]
    assert key not in owner.get("/api/keys").get_data(as_text=True)
    assert key not in owner.get("/account").get_data(as_text=True)
    with private.app_context():
        row = db.session.get(ApiKey, made["id"])
        assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
        stored = " ".join(str(getattr(row, c.name)) for c in ApiKey.__table__.columns)
    assert key not in stored


def test_a_valid_key_searches_a_private_gallery_without_csrf_or_cookies(private):
    owner = private.test_client()
    sign_up(owner, "owner@example.com")
    key = new_key(owner)["key"]
    script = private.test_client(use_cookies=False)
    assert script.get("/api/gallery").status_code == 401  # without the key, a stranger: the gallery is private
    r = post_search(script, PHOTO, headers={})
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "unauthorized"  # told to sign in first
    r = search_with(script, key)
    assert r.status_code == 200 and r.get_json()["results"][0]["path"] == "coffee.png"
    assert "Set-Cookie" not in r.headers  # no session is made for a key
    assert script.get("/api/gallery", headers=bearer(key)).get_json()["total"] == 7
    assert script.get("/thumbs/coffee.png", headers=bearer(key)).status_code == 200
    history = owner.get("/api/history").get_json()["items"]
    assert history[0]["id"] == r.get_json()["query"]["search_id"]  # the account's own history
    assert owner.get("/api/keys").get_json()["items"][0]["last_used_at"] is not None
    # cookie sessions keep their CSRF check
    assert post_search(owner, PHOTO, headers={}).get_json()["error"]["code"] == "csrf_failed"


@pytest.mark.parametrize("spoil", ["revoked", "expired", "mistyped", "unknown", "empty"])
def test_a_wrong_expired_or_revoked_key_is_401_json(private, spoil):
    owner = private.test_client()
    sign_up(owner, "owner@example.com")
    made = new_key(owner)
    key = made["key"]
    if spoil == "revoked":
        assert owner.delete(f"/api/keys/{made['id']}", headers=csrf_headers(owner)).get_json() == {"revoked": made["id"]}
    elif spoil == "expired":
        with private.app_context():
            db.session.get(ApiKey, made["id"]).expires_at = datetime.now(timezone.utc) - timedelta(seconds=1)
            db.session.commit()
    elif spoil == "mistyped":
        key = key[:-1] + ("A" if key[-1] != "A" else "B")
    elif spoil == "unknown":
        key = "sbi_" + "x" * 43
    else:
        key = ""
    script = private.test_client(use_cookies=False)
    for r in (search_with(script, key), script.get("/api/gallery", headers=bearer(key))):
        assert r.status_code == 401 and r.get_json()["error"]["code"] == "invalid_api_key", r.get_json()
    # a bad key is refused even beside a good session cookie: no falling back to the cookie
    r = owner.get("/api/gallery", headers=bearer(key))
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "invalid_api_key"
    assert owner.get("/api/gallery").status_code == 200


def test_a_disabled_or_deleted_accounts_keys_stop_at_once(private):
    owner = private.test_client()
    sign_up(owner, "owner@example.com")
    user = private.test_client()
    sign_up(user, "user@example.com")
    key = new_key(user)["key"]
    script = private.test_client(use_cookies=False)
    assert script.get("/api/gallery", headers=bearer(key)).status_code == 200
    user_id = next(u["id"] for u in owner.get("/api/admin/users").get_json()["items"] if u["email"] == "user@example.com")
    owner.patch(f"/api/admin/users/{user_id}", json={"disabled": True}, headers=csrf_headers(owner))
    assert script.get("/api/gallery", headers=bearer(key)).get_json()["error"]["code"] == "invalid_api_key"
    owner.patch(f"/api/admin/users/{user_id}", json={"disabled": False}, headers=csrf_headers(owner))
    assert script.get("/api/gallery", headers=bearer(key)).status_code == 200
    assert owner.delete(f"/api/admin/users/{user_id}", headers=csrf_headers(owner)).status_code == 200
    assert script.get("/api/gallery", headers=bearer(key)).status_code == 401
    with private.app_context():
        assert db.session.query(ApiKey).count() == 0  # deleted with the account


def test_a_key_has_its_accounts_role_and_cannot_make_keys(private):
    owner = private.test_client()
    sign_up(owner, "owner@example.com")
    user = private.test_client()
    sign_up(user, "user@example.com")
    admin_key, user_key = new_key(owner, "admin script")["key"], new_key(user, "user script")["key"]
    script = private.test_client(use_cookies=False)
    for url in ("/api/admin/users", "/api/admin/status?drift=0", "/api/admin/audit", "/api/admin/keys"):
        r = script.get(url, headers=bearer(user_key))
        assert r.status_code == 403 and r.get_json()["error"]["code"] == "forbidden", url
        assert script.get(url, headers=bearer(admin_key)).status_code == 200, url
    r = script.delete("/api/admin/images", json={"ids": [1]}, headers=bearer(user_key))
    assert r.status_code == 403
    r = script.post("/api/keys", json={"name": "another"}, headers=bearer(user_key))
    assert r.status_code == 403 and r.get_json()["error"]["code"] == "session_required"


def test_administrators_list_and_revoke_anyones_keys(private):
    owner = private.test_client()
    sign_up(owner, "owner@example.com")
    user = private.test_client()
    sign_up(user, "user@example.com")
    made = new_key(user, "laptop")
    items = owner.get("/api/admin/keys").get_json()["items"]
    assert [(k["name"], k["email"]) for k in items] == [("laptop", "user@example.com")] and "key" not in items[0]
    assert user.delete(f"/api/admin/keys/{made['id']}", headers=csrf_headers(user)).status_code == 403
    other = new_key(owner, "mine")
    assert user.delete(f"/api/keys/{other['id']}", headers=csrf_headers(user)).status_code == 404  # not theirs
    assert owner.delete(f"/api/admin/keys/{made['id']}", headers=csrf_headers(owner)).status_code == 200
    script = private.test_client(use_cookies=False)
    assert script.get("/api/gallery", headers=bearer(made["key"])).status_code == 401
    assert user.get("/api/keys").get_json()["items"] == []
    assert owner.delete(f"/api/admin/keys/{made['id']}", headers=csrf_headers(owner)).status_code == 404


@pytest.mark.parametrize("private", [{"THROTTLE": True, "SEARCH_LIMIT": "2 per minute"}], indirect=True)
def test_keys_are_throttled_each_on_its_own(private):
    owner = private.test_client()
    sign_up(owner, "owner@example.com")
    first, second = new_key(owner, "first")["key"], new_key(owner, "second")["key"]
    script = private.test_client(use_cookies=False)
    assert [search_with(script, first).status_code for _ in range(3)] == [200, 200, 429]
    r = search_with(script, first)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert r.get_json()["error"]["code"] == "too_many_requests"
    assert search_with(script, second).status_code == 200  # another key of the same account has its own count


def test_the_audit_trail_names_the_key(private):
    owner = private.test_client()
    sign_up(owner, "owner@example.com")
    made = new_key(owner, "backup job")
    script = private.test_client(use_cookies=False)
    assert script.post("/api/admin/invitations", json={"days": 2}, headers=bearer(made["key"])).status_code == 201
    owner.post("/api/admin/invitations", json={"days": 2}, headers=csrf_headers(owner))
    items = owner.get("/api/admin/audit").get_json()["items"]
    by_browser, by_key, created = items[0], items[1], items[2]
    assert by_key["action"] == "invitation_created" and by_key["detail"]["by"] == "API key backup job"
    assert by_key["email"] == "owner@example.com"
    assert by_browser["action"] == "invitation_created" and "by" not in by_browser["detail"]
    assert created["action"] == "api_key_created" and created["detail"]["key"] == "backup job"


def test_keys_on_the_account_page(private):
    owner = private.test_client()
    sign_up(owner, "owner@example.com")
    page = owner.get("/account").get_data(as_text=True)
    assert 'id="api-keys"' in page and 'id="key-form"' in page and "js/api-keys.js" in page
    assert "/api/docs" in page  # the footer links the reference


def test_the_api_reference_page_needs_sign_in_in_private_mode(private):
    stranger = private.test_client()
    r = stranger.get("/api/docs")
    assert r.status_code == 302 and "/auth/login" in r.headers["Location"]
    assert stranger.get("/api/openapi.json").status_code == 401
    owner = private.test_client()
    sign_up(owner, "owner@example.com")
    page = owner.get("/api/docs")
    assert page.status_code == 200 and b"swagger-ui-bundle.js" in page.data and b"js/api-docs.js" in page.data
    assert sign_in(private.test_client(), "owner@example.com").status_code == 302
    key = new_key(owner)["key"]
    assert private.test_client(use_cookies=False).get("/api/openapi.json", headers=bearer(key)).status_code == 200


def test_the_account_page_makes_and_revokes_keys_with_its_csrf_token(private):
    """The page's script uses the JSON API with the page's CSRF token, as every page does."""
    owner = private.test_client()
    sign_up(owner, "owner@example.com")
    token = form_token(owner.get("/account").get_data(as_text=True), "pw-")
    r = owner.post("/api/keys", json={"name": "from the page"}, headers={"X-CSRFToken": token})
    assert r.status_code == 201
    assert owner.post("/api/keys", json={"name": "no token"}).get_json()["error"]["code"] == "csrf_failed"
