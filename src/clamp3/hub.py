"""The one way clamp3 reaches the Hugging Face hub: official checkpoints, the tokenizer, MERT.

:func:`fetch` looks in the cache first (no network), then, unless ``HF_HUB_OFFLINE`` is set,
probes the hub once with a short HEAD request (:func:`hub_unreachable`) and downloads only when
it answers. huggingface_hub alone retries an unreachable hub for ~25-40 s per file; a job that
needs one missing file therefore fails within seconds, with one message naming the file and the
``hf download`` command that fetches it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from clamp3.utils.errors import CheckpointError

HUB_PROBE_TIMEOUT = 5.0  # seconds; the hub answers a HEAD request in well under one
HUB_CACHE = "~/.cache/huggingface/hub"


def hub_unreachable(endpoint: str, timeout: float = HUB_PROBE_TIMEOUT) -> str | None:
    """One HEAD request to ``endpoint`` without retries: None when any HTTP answer comes back
    (the hub is reachable), else why not (no DNS, refused, timed out). Proxies come from the
    environment, as for huggingface_hub."""
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        return None  # an error status is still an answer from the server
    except (OSError, ValueError) as exc:  # URLError, timeouts and refusals are OSErrors
        return f"{endpoint} is unreachable: {getattr(exc, 'reason', exc)}"
    return None


def cached(repo_id: str, filename: str) -> Path | None:
    """The cached copy of ``repo_id``/``filename``, or None (never touches the network)."""
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id=repo_id, filename=filename, local_files_only=True))
    except Exception:  # not cached, or an unreadable cache entry
        return None


def offline_reason() -> str | None:
    """Why the hub must not be tried now (``HF_HUB_OFFLINE``, or the probe failed), else None."""
    from huggingface_hub import constants

    return "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else hub_unreachable(constants.ENDPOINT)


def is_repo_id(name: str) -> bool:
    """Whether ``name`` can name a hub repository (``owner/name`` or ``name``, huggingface_hub's
    own rule); a path such as ``/data/mert`` or ``./mert`` cannot."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def fetch(
    repo_id: str,
    filenames: str | Sequence[str],
    *,
    what: str,
    error: type[Exception] = CheckpointError,
    instead: str = "",
    also: Sequence[str] = (),
) -> Path:
    """The local path of ``repo_id``'s file: the first of ``filenames`` (alternatives, e.g.
    ``model.safetensors`` then ``pytorch_model.bin``) found in the cache, else the first the hub
    gives. Raises ``error`` with one message otherwise: ``what`` is missing, the file, the
    ``hf download`` command (for it and the files ``also`` needed beside it), and ``instead``
    (what else the user may do, e.g. pass a path)."""
    from huggingface_hub import hf_hub_download

    if not is_repo_id(repo_id):  # e.g. a folder path that does not exist: no hub can help
        raise error(f"{repo_id}: no such folder (and not a Hugging Face repository id) for {what}")
    names = [filenames] if isinstance(filenames, str) else list(filenames)
    for name in names:
        path = cached(repo_id, name)
        if path is not None:
            return path
    reason = offline_reason()
    if reason is None:
        for name in names:
            try:
                return Path(hf_hub_download(repo_id=repo_id, filename=name))
            except Exception as exc:  # missing on the hub, refused, or the connection broke
                reason = type(exc).__name__
    url = f"https://huggingface.co/{repo_id}/resolve/main/{names[0]}"
    raise error(
        f"{what}: {repo_id} {names[0]} is not in the Hugging Face cache and could not be downloaded "
        f"({reason}). On a connected machine run `hf download {repo_id} {' '.join([names[0], *also])}` and copy its "
        f"cache ({HUB_CACHE}) here, or fetch {url}" + (f" {instead}" if instead else "") + "."
    )
