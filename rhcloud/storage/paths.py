"""Paths and URLs: what is remote, the fsspec options each URL gets, where a run's outputs
go (a local directory, or an object-store URL written through a local staging directory and
uploaded when the run's files are complete), and ``redact``, which masks credentials in
anything written (provenance, logs)."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import fsspec

_SECRET_KEY = re.compile(r"token|secret|password|passwd|credential|auth|api_?key|"
                         r"access_key|private", re.I)
_PUBLIC_VALUES = {"anon", "anonymous", "google_default", "cloud", None, True, False}


def is_url(path: str | Path) -> bool:
    """True for anything with a scheme (``gs://``, ``file://`` …), False for a plain path."""
    return "://" in str(path)


def is_remote(url: str | Path) -> bool:
    """True for an fsspec URL (``gs://``, ``s3://``, ``https://`` …); False for a local path
    and for ``file://``."""
    return is_url(url) and not str(url).startswith("file://")


FILE_SUFFIXES = (".nc", ".nc4", ".cdf", ".h5", ".zarr", ".tif", ".tiff")


def names_a_file(value: Any) -> bool:
    """Whether an entry's value names a file (a URL, a path with a directory or a data
    file's suffix) rather than a variable inside the entry's own file."""
    text = str(value)
    return is_url(text) or "/" in text or text.lower().endswith(FILE_SUFFIXES)


# gcsfs sets no timeout by default (a stalled request hangs its thread for ever), and a
# total timeout raises a TimeoutError it does not retry; a socket-read timeout it retries.
GCS_READ_TIMEOUT_S = 60.0
GCS_CONNECT_TIMEOUT_S = 30.0


def _gcs_timeout(value: Any):
    """``requests_timeout`` (seconds, or None for the default) as a per-read timeout."""
    import aiohttp

    if isinstance(value, aiohttp.ClientTimeout):
        return value
    read = GCS_READ_TIMEOUT_S if value is None else float(value)
    return aiohttp.ClientTimeout(total=None, sock_connect=min(read, GCS_CONNECT_TIMEOUT_S),
                                 sock_read=read)


def storage_options_for(url: str, storage_options: dict[str, Any] | None) -> dict[str, Any] | None:
    """The options to pass to fsspec for ``url``: none for local paths and ``file://``; for
    ``gs://`` a retried per-read timeout (``requests_timeout`` in seconds, default 60)."""
    if not is_remote(url):
        return None
    opts = dict(storage_options or {})
    if url.startswith(("gs://", "gcs://")):
        opts["requests_timeout"] = _gcs_timeout(opts.get("requests_timeout"))
    return opts or None


def redact(obj: Any) -> Any:
    """A copy of ``obj`` with the values of secret-looking keys replaced by '<redacted>'."""
    if isinstance(obj, dict):
        return {k: ("<redacted>" if _SECRET_KEY.search(str(k)) and not (
                    isinstance(v, str | bool | type(None)) and v in _PUBLIC_VALUES)
                    else redact(v)) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(redact(v) for v in obj)
    return obj


@contextmanager
def staged_output(output: str, storage_options: dict[str, Any] | None = None) -> Iterator[Path]:
    """Yield a local directory to write into; for a remote ``output`` its files are uploaded
    there (same relative paths) when the block ends without error."""
    if not is_remote(output):
        path = Path(str(output).removeprefix("file://"))
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="rhcloud-out-") as tmp:
        local = Path(tmp)
        yield local
        fs, root = fsspec.core.url_to_fs(output, **(storage_options or {}))
        files = sorted(p for p in local.rglob("*") if p.is_file())
        rel = [p.relative_to(local).as_posix() for p in files]
        # names are the run's own (tables/…, figures/…): nothing can escape ``root``
        fs.put([str(p) for p in files], [f"{root.rstrip('/')}/{r}" for r in rel])
