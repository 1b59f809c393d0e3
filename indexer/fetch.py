"""The one way the product fetches a picture over HTTP: search by URL and the CSV downloader both use it.

With ``guard`` on (search by URL, where the address comes from a stranger) every hop, the first request and
each redirect, resolves the host once, refuses private, loopback, link-local and other non-public addresses
(IPv4 hidden inside IPv6 included) unless an allow-list admits them, and connects to exactly the address it
checked, so a second DNS answer cannot redirect the request. ``total_seconds`` bounds the whole fetch, not
each read, so a server that drips one byte a second cannot hold it.
"""
from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Iterable
from urllib.parse import quote, urljoin, urlsplit

MAX_REDIRECTS = 5
_CHUNK = 1 << 16
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class FetchError(Exception):
    """A fetch that did not give an image; ``retry`` says whether trying again later may help."""

    retry = False


class FetchBadURL(FetchError):
    """The URL is malformed or not http(s)."""


class FetchRefused(FetchError):
    """The URL leads to an address a guarded fetch may not reach."""


class FetchFailed(FetchError):
    """The server could not be reached, answered with an error, or took too long."""

    def __init__(self, message: str, retry: bool = False) -> None:
        super().__init__(message)
        self.retry = retry


class FetchTooLarge(FetchError):
    """The body is larger than allowed."""


class FetchNotImage(FetchError):
    """The server answered with something other than an image."""


@dataclass
class Fetched:
    data: bytes
    content_type: str
    url: str  # after redirects


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, 6to4, Teredo, NAT64, IPv4-compatible), if any."""
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip.sixtofour:
        return ip.sixtofour
    if ip.teredo:
        return ip.teredo[1]
    if ip in _NAT64 or (int(ip) >> 32 == 0 and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_allowed(ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
                    allow: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network] = ()) -> bool:
    """Whether a guarded fetch may connect to ``ip``: listed in ``allow``, or public and unicast (and so is
    any IPv4 address it embeds)."""
    allow = list(allow)
    if any(ip in net for net in allow if net.version == ip.version):
        return True
    if ip.version == 6:
        inner = _embedded_ipv4(ip)
        if inner is not None and not address_allowed(inner, allow):
            return False
    return ip.is_global and not ip.is_multicast


def _resolve(host: str, port: int, allow: list) -> str:
    """The first address of ``host``; FetchRefused if any address it resolves to is not allowed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError):
        raise FetchFailed(f"the host '{host}' could not be resolved", retry=True) from None
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    for ip in addresses:
        if not address_allowed(ip, allow):
            raise FetchRefused(f"URLs that lead to private or local addresses ({ip}) are refused")
    return str(addresses[0])


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to a fixed IP address while verifying the certificate for the URL's host name."""

    def __init__(self, ip: str, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._ip = ip

    def connect(self) -> None:
        sock = socket.create_connection((self._ip, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


_TARGET_SAFE = "/?#[]@!$&'()*+,;=:%~-._"


def _split(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, request target) of an http(s) URL; FetchBadURL for anything else."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise FetchBadURL(f"not a valid URL ({e})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchBadURL("only http and https URLs are supported")
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        host = parts.hostname.encode("idna").decode("ascii")  # an internationalised name as DNS spells it
    except UnicodeError:
        raise FetchBadURL("the host name is not a valid domain name") from None
    # Characters a request line cannot carry (non-ASCII letters, spaces, controls) percent-encoded as UTF-8,
    # as a browser sends them; escapes already there and every delimiter stay as they are.
    target = quote((parts.path or "/") + (f"?{parts.query}" if parts.query else ""), safe=_TARGET_SAFE)
    return parts.scheme, host, port, target


def fetch_image(url: str, *, max_bytes: int, total_seconds: float, guard: bool = True,
                allow_networks: Iterable[str] = ()) -> Fetched:
    """GET an image, following up to ``MAX_REDIRECTS`` redirects, within ``total_seconds`` in all.

    Raises FetchBadURL, FetchRefused, FetchFailed (``retry`` set for network errors, 5xx and 429), FetchTooLarge or
    FetchNotImage. The caller decodes the data: a content type of image/* is all this checks.
    """
    allow = [ipaddress.ip_network(n, strict=False) for n in allow_networks]
    deadline = _Deadline(total_seconds)
    for _ in range(MAX_REDIRECTS + 1):
        got = _get(url, deadline, max_bytes, allow if guard else None)
        if isinstance(got, Fetched):
            return got
        url = got
    raise FetchFailed(f"the URL redirected more than {MAX_REDIRECTS} times")


class _Deadline:
    """The end of a whole fetch: the time left for the next step, or FetchFailed once it has passed."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def remaining(self) -> float:
        left = self.at - time.monotonic()
        if left <= 0:
            raise FetchFailed(f"the download took longer than {self.seconds:g} s", retry=True)
        return left

    def failure(self, error: Exception) -> FetchFailed:
        """What a network error means: the deadline's timeout when it came as the time ran out."""
        if isinstance(error, (TimeoutError, socket.timeout)) and self.at - time.monotonic() <= 0.05:
            return FetchFailed(f"the download took longer than {self.seconds:g} s", retry=True)
        return FetchFailed(f"network error: {error}", retry=True)


def _get(url: str, deadline: _Deadline, max_bytes: int, allow: list | None) -> Fetched | str:
    """One request: the image, or the URL a redirect leads to. ``allow`` None: no address guard."""
    scheme, host, port, target = _split(url)
    ip = _resolve(host, port, allow) if allow is not None else host
    default_port = 443 if scheme == "https" else 80
    conn = (_PinnedHTTPS(ip, host, port, deadline.remaining()) if scheme == "https"
            else http.client.HTTPConnection(ip, port, timeout=deadline.remaining()))
    host_header = (f"[{host}]" if ":" in host else host) + (f":{port}" if port != default_port else "")
    try:
        conn.request("GET", target, headers={"Host": host_header, "User-Agent": "search-by-image",
                                             "Accept": "image/*"})
        sock = conn.sock  # http.client lets go of it once the body is read; the timeout must stay set
        sock.settimeout(deadline.remaining())
        response = conn.getresponse()
        if response.status in (301, 302, 303, 307, 308) and response.getheader("Location"):
            return urljoin(url, response.getheader("Location"))
        ctype = _image_type(response, max_bytes)
        return Fetched(_body(response, sock, deadline, max_bytes), ctype, url)
    except (OSError, http.client.HTTPException) as e:
        raise deadline.failure(e) from None
    finally:
        conn.close()


def _image_type(response: http.client.HTTPResponse, max_bytes: int) -> str:
    """The content type of a response that can carry the image; FetchFailed, FetchNotImage or FetchTooLarge
    (by its announced length) otherwise."""
    if response.status != 200:
        raise FetchFailed(f"HTTP {response.status}", retry=response.status >= 500 or response.status == 429)
    ctype = (response.getheader("Content-Type") or "").split(";")[0].strip().lower()
    if not ctype.startswith("image/"):
        raise FetchNotImage(f"content type '{ctype}' is not an image")
    length = response.getheader("Content-Length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise FetchTooLarge(f"the image is larger than the {max_bytes:,} byte limit")
    return ctype


def _body(response: http.client.HTTPResponse, sock: socket.socket, deadline: _Deadline, max_bytes: int) -> bytes:
    """The response's body, read within the deadline; FetchTooLarge beyond ``max_bytes``."""
    chunks, size = [], 0
    while not response.isclosed():
        sock.settimeout(deadline.remaining())
        block = response.read1(_CHUNK)
        if not block:
            break
        size += len(block)
        if size > max_bytes:
            raise FetchTooLarge(f"the image is larger than the {max_bytes:,} byte limit")
        chunks.append(block)
    return b"".join(chunks)
