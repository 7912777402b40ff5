"""What can go wrong while serving, as domain errors, each with its HTTP status.

Every message is written for the person at the search box or the operator: it says what was
wrong and, where possible, what to do instead. ``app.py`` answers each with its class's
``status`` and ``code``; the codes of plain HTTP errors (an unknown route, a body too large)
come from the same classes (:func:`code_of_status`), so one failure has one name.
"""

from __future__ import annotations


class ServeError(Exception):
    """Base class; ``code`` is a stable machine-readable name, ``status`` the HTTP status,
    ``str(err)`` the message. Subclasses give both as class keywords."""

    code = "bad_request"
    status = 400

    def __init_subclass__(cls, code: str, status: int, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.code, cls.status = code, status

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class NotFound(ServeError, code="not_found", status=404):
    """No such item, upload, page or file."""


class Forbidden(ServeError, code="forbidden", status=403):
    """A file outside the served root, or admin endpoints that are switched off."""


class Unauthorized(ServeError, code="unauthorized", status=401):
    """An admin call without the right token (answered with ``WWW-Authenticate: Bearer``)."""


class TooLarge(ServeError, code="too_large", status=413):
    """An upload over the size limit, or a recording longer than allowed."""


class UnsupportedType(ServeError, code="unsupported_type", status=415):
    """An upload of a kind the service does not read."""


class RangeNotSatisfiable(ServeError, code="range_not_satisfiable", status=416):
    """A ``Range`` header that cannot be served for a file of ``size`` bytes."""

    def __init__(self, message: str, size: int):
        super().__init__(message)
        self.size = size


class Unprocessable(ServeError, code="unprocessable", status=422):
    """Input of the right kind that cannot be used (a corrupt file, a bad filter)."""


class Unavailable(ServeError, code="unavailable", status=503):
    """What the request needs is busy or not loaded (the encoder, the renderer, a model)."""


def code_of_status(status: int) -> str | None:
    """The ``code`` of the error class answered with ``status`` (``None`` if no class is)."""
    found = [cls.code for cls in (ServeError, *ServeError.__subclasses__()) if cls.status == status]
    return found[0] if found else None
