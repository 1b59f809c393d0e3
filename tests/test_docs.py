"""The documentation stays true to the tree: every relative link in README.md and docs/*.md leads to a file
that exists (and to a heading that exists, when it names one), and every setting ``load_config`` reads from
the environment has its row in docs/configuration.md."""
import glob
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
CONFIGURATION = os.path.join(ROOT, "docs", "configuration.md")

LINK = re.compile(r"!?\[(?:[^\]`]|`[^`]*`)*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def links(text: str) -> list[str]:
    """The targets of the Markdown links and images in ``text``, outside code blocks."""
    return LINK.findall(FENCE.sub("", text))


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: str) -> set[str]:
    """Every heading anchor of a Markdown file (repeated headings get -1, -2... as on GitHub)."""
    seen: dict[str, int] = {}
    found = set()
    with open(path, encoding="utf-8") as f:
        text = FENCE.sub("", f.read())
    for line in text.splitlines():
        m = re.match(r"#{1,6} (.+)", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return found


def broken_links(page: str) -> list[str]:
    """The relative links of ``page`` whose file, or heading, does not exist."""
    with open(page, encoding="utf-8") as f:
        targets = links(f.read())
    broken = []
    for target in targets:
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: are not the tree's
            continue
        path, _, anchor = target.partition("#")
        resolved = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
        if not os.path.exists(resolved):
            broken.append(target)
        elif anchor and resolved.endswith(".md") and anchor not in anchors(resolved):
            broken.append(target)
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: os.path.relpath(p, ROOT))
def test_every_relative_link_resolves(page):
    with open(page, encoding="utf-8") as f:
        assert links(f.read()), "a page without a single link: the link pattern no longer matches"
    assert broken_links(page) == []


def test_a_broken_link_is_caught(tmp_path):
    (tmp_path / "there.md").write_text("# A heading\n")
    page = tmp_path / "page.md"
    page.write_text("[ok](there.md) [ok](there.md#a-heading) [`code` ok](#local) [web](https://example.org/x)\n"
                    "[gone](missing.py) [no heading](there.md#nowhere)\n\n## Local\n\n```\n[not a link](nope)\n```\n")
    assert broken_links(str(page)) == ["missing.py", "there.md#nowhere"]


class RecordingEnviron(dict):
    """``os.environ`` as ``load_config`` sees it, noting every name it asks for."""

    def __init__(self, values):
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key):
        self.read.add(key)
        return super().__contains__(key)


def settings_read(monkeypatch) -> set[str]:
    """The environment variables ``load_config`` (app/config.py with indexer/config.py) reads."""
    from app.config import load_config  # imported first, so that only load_config's own reads are noted
    environ = RecordingEnviron({k: v for k, v in os.environ.items() if k.startswith(("PATH", "HOME"))})
    monkeypatch.setattr(os, "environ", environ)
    load_config()
    return environ.read


def documented_settings() -> set[str]:
    """The variables named in the rows of the configuration table."""
    with open(CONFIGURATION, encoding="utf-8") as f:
        rows = [line for line in f if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])}


def test_every_setting_is_in_the_configuration_table(monkeypatch):
    read = settings_read(monkeypatch)
    assert {"DATABASE_URL", "DINOV2_WEIGHTS", "SIGNIN_LIMIT", "FAISS_HNSW_M", "GALLERY_MILVUS_URI"} <= read
    assert sorted(read - documented_settings()) == []
