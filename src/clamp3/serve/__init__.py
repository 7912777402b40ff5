"""``clamp3 serve``: a search service and web page over an index built by ``clamp3 index``.

Needs the ``serve`` extra (FastAPI, uvicorn, python-multipart, verovio). The pieces:

=================  ==========================================================================
``catalog.py``     the service state: index snapshot (swapped atomically), ids, search, reload
``encoder.py``     query vectors: batched text encoding, uploaded files, one model lock
``media.py``       indexed files only: safe resolution under the media root, byte ranges
``uploads.py``     uploaded query files: type checks (extension + content) in a private temp dir
``content.py``     what an upload holds: recording length from the header, notes after conversion
``render.py``      scores and MIDI -> SVG in a sandboxed subprocess (``render_job.py``, ``pianoroll.py``)
``errors.py``      domain errors (``app.py`` maps each class to an HTTP status)
``service.py``     assembly: model + index folder + media root + settings -> the ASGI app
``app.py``         HTTP only: the FastAPI application, middleware, error mapping, the page
``routes.py``      HTTP only: the JSON API endpoints; ``schemas.py``: their JSON shapes
``guards.py``      HTTP only: Host check, body-size limit, security headers (ASGI middleware)
``logs.py``        JSON log lines and the per-request access log
``static/``        the web page (no build step, no CDN)
=================  ==========================================================================

    from clamp3.serve.service import build_app
    app = build_app("index/", "music/", Clamp3Model.from_pretrained("saas"))  # any ASGI server
"""

from __future__ import annotations

from clamp3.serve.errors import ServeError

__all__ = ["ServeError"]
