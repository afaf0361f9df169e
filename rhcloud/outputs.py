"""Where a run's outputs go: a local directory, or an object-store URL (``gs://``, ``s3://``,
any fsspec URL) written through a local staging directory and uploaded when the run's files
are complete. Secrets never reach the outputs: ``redact`` masks credentials in anything
written (provenance, logs)."""

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


def is_remote(output: str) -> bool:
    return "://" in str(output) and not str(output).startswith("file://")


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
