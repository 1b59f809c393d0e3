"""What can go wrong in a service, in the service's own words. ``app.errors`` is the one place these become
HTTP statuses; the command line prints them."""
from __future__ import annotations


class ServiceError(Exception):
    """A request the service cannot carry out; ``code`` is machine-readable, the message is for people."""

    code = "error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidInput(ServiceError):
    """A field is missing, malformed or out of range."""

    code = "invalid_field"


class NotFound(ServiceError):
    """What the request names does not exist (or is not the caller's)."""

    code = "not_found"


class Busy(ServiceError):
    """Another change holds the gallery; the same request later will work."""

    code = "busy"


class UnsupportedMedia(ServiceError):
    """The input is not an image of an accepted format."""

    code = "unsupported_media_type"


class Unprocessable(ServiceError):
    """The input is well-formed but cannot be used (undecodable, too many pixels, a URL that failed)."""

    code = "unprocessable"


class NotReady(ServiceError):
    """The weights or the gallery index are missing or unreadable; the message says which command makes them."""

    code = "not_ready"


class TextSearchOff(ServiceError):
    """Search with words (or in CLIP's space) was asked for, and no CLIP weights are configured."""

    code = "text_search_off"


class Overloaded(ServiceError):
    """Too much model work is waiting (``inference_queue``); ``retry_after`` seconds is a fair guess at when to
    try again."""

    code = "overloaded"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Starting(Overloaded):
    """The process is still getting ready to serve (``app.startup``): the same request in a moment will work."""

    code = "starting"
