"""Fetching a query image from a URL without opening a door into the server's network (SSRF).

Every hop (the first request and each redirect) resolves the host once, refuses private, loopback,
link-local and other non-public addresses unless an allow-list admits them, and connects to exactly the
address it checked, so a second DNS answer cannot redirect the request.
"""
from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from typing import Iterable
from urllib.parse import urljoin, urlsplit

from .errors import ApiError

MAX_REDIRECTS = 5


def _allowed(ip: ipaddress._BaseAddress, allow: Iterable[ipaddress._BaseNetwork]) -> bool:
    if any(ip in net for net in allow):
        return True
    return ip.is_global and not ip.is_multicast


def resolve(host: str, port: int, allow: list) -> str:
    """The first address of ``host``; ApiError if any address it resolves to is not allowed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise ApiError(422, "url_fetch_failed", f"The host '{host}' could not be resolved.") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    for ip in addresses:
        if not _allowed(ip, allow):
            raise ApiError(400, "url_not_allowed", f"URLs that lead to private or local addresses ({ip}) are refused.")
    return str(addresses[0])


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to a fixed IP address while verifying the certificate for the URL's host name."""

    def __init__(self, ip: str, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._ip = ip

    def connect(self) -> None:
        sock = socket.create_connection((self._ip, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def fetch_image_url(url: str, *, timeout: float, max_bytes: int, allow_networks: Iterable[str] = ()) -> bytes:
    """The body of an image URL; ApiError 400 (bad or refused URL), 413, 415 or 422 (fetch failed)."""
    allow = [ipaddress.ip_network(n, strict=False) for n in allow_networks]
    for _ in range(MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ApiError(400, "invalid_field", "'url' must be an http or https URL.")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        ip = resolve(parts.hostname, port, allow)
        conn = (_PinnedHTTPS(ip, parts.hostname, port, timeout) if parts.scheme == "https"
                else http.client.HTTPConnection(ip, port, timeout=timeout))
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            conn.request("GET", target, headers={"Host": parts.netloc, "User-Agent": "search-by-image",
                                                 "Accept": "image/*"})
            response = conn.getresponse()
            if response.status in (301, 302, 303, 307, 308) and response.getheader("Location"):
                url = urljoin(url, response.getheader("Location"))
                continue
            if response.status != 200:
                raise ApiError(422, "url_fetch_failed", f"The URL answered HTTP {response.status}.")
            ctype = (response.getheader("Content-Type") or "").split(";")[0].strip().lower()
            if not ctype.startswith("image/"):
                raise ApiError(415, "unsupported_media_type", f"The URL is not an image (content type '{ctype}').")
            length = response.getheader("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise ApiError(413, "request_entity_too_large", f"The image is larger than {max_bytes:,} bytes.")
            data = response.read(max_bytes + 1)
            if len(data) > max_bytes:
                raise ApiError(413, "request_entity_too_large", f"The image is larger than {max_bytes:,} bytes.")
            return data
        except (OSError, http.client.HTTPException) as e:
            raise ApiError(422, "url_fetch_failed", f"The URL could not be fetched: {e}") from None
        finally:
            conn.close()
    raise ApiError(422, "url_fetch_failed", f"The URL redirected more than {MAX_REDIRECTS} times.")
