"""What can go wrong while serving, as domain errors; ``app.py`` maps each class to an HTTP status.

Every message is written for the person at the search box or the operator: it says what was
wrong and, where possible, what to do instead.
"""

from __future__ import annotations


class ServeError(Exception):
    """Base class; ``code`` is a stable machine-readable name, ``str(err)`` the message."""

    code = "bad_request"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class NotFound(ServeError):
    code = "not_found"


class Forbidden(ServeError):
    code = "forbidden"


class Unauthorized(ServeError):
    code = "unauthorized"


class TooLarge(ServeError):
    code = "too_large"


class UnsupportedType(ServeError):
    code = "unsupported_type"


class Unprocessable(ServeError):
    code = "unprocessable"


class Unavailable(ServeError):
    code = "unavailable"


class RangeNotSatisfiable(ServeError):
    """A ``Range`` header that cannot be served for a file of ``size`` bytes."""

    code = "range_not_satisfiable"

    def __init__(self, message: str, size: int):
        super().__init__(message)
        self.size = size
