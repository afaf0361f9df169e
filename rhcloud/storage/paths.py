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

from rhcloud.errors import RhcloudError

# keys whose value is a credential, whatever the value looks like: fsspec backends' own
# (s3fs key/secret/token, gcsfs token, adlfs account_key/connection_string/sas_token/
# client_secret, http client_kwargs/headers/cookies) and the generic names
_SECRET_KEY = re.compile(
    r"token|secret|password|passw(or)?d|pwd|credential|auth|api_?key|access_?key|private|"
    r"account_?key|connection_?string|sas|signature|cookie|session|client_kwargs|headers|"
    r"^key$|_key$|^key_", re.I)
_PUBLIC_VALUES = {"anon", "anonymous", "google_default", "cloud", None, True, False}
# options of ``storage_options``/``output_storage_options`` known to hold no secret; every
# other one is redacted whatever its name (a backend may take a credential under any name)
HARMLESS_STORAGE_OPTIONS = frozenset({
    "anon", "token", "project", "endpoint_url", "requests_timeout", "requester_pays",
    "region_name", "region", "use_ssl", "default_block_size", "default_cache_type",
    "cache_timeout", "skip_instance_cache", "use_listings_cache", "listings_expiry_time",
    "version_aware", "consistency", "access", "check_connection", "default_fill_cache",
    "timeout", "retries", "asynchronous", "loop", "block_size", "account_name",
    "use_fabric_endpoint", "simple_links", "same_scheme", "size_policy"})
STORAGE_OPTION_KEYS = ("storage_options", "output_storage_options")
REDACTED = "<redacted>"
# credentials recognisable by their form wherever they appear (a value, a message, a URL)
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<info>[^/@\s'\"]+)@")
_URL_QUERY_SECRET = re.compile(
    r"(?P<name>[?&](?:sig|signature|token|access_token|key|secret|"
    r"password|x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature|"
    r"x-goog-credential)=)[^&#\s'\"]+", re.I)
_PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE "
                          r"KEY-----|$)", re.S)
_AWS_KEY_ID = re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")
_CONNECTION_STRING = re.compile(r"(AccountKey|SharedAccessSignature|SharedAccessKey|"
                                r"Password|Pwd)=[^;\s'\"]+", re.I)


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


def redact_text(text: str) -> str:
    """``text`` with credentials recognisable by their form masked: URL userinfo
    (``user:pass@`` in any URL), secret query parameters (SAS ``sig``, signed-URL
    signatures, ``token=``), private-key blocks, AWS access key ids and the secret parts
    of Azure connection strings."""
    text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)
    text = _URL_QUERY_SECRET.sub(lambda m: f"{m['name']}{REDACTED}", text)
    text = _PRIVATE_KEY.sub(REDACTED, text)
    text = _AWS_KEY_ID.sub(REDACTED, text)
    return _CONNECTION_STRING.sub(lambda m: f"{m[1]}={REDACTED}", text)


def _public(value: Any) -> bool:
    return isinstance(value, str | bool | type(None)) and value in _PUBLIC_VALUES


def _storage_options(opts: Any) -> Any:
    """A ``storage_options`` mapping with every option not known to be harmless redacted
    (``token`` kept only for the public values: anon, google_default …)."""
    if not isinstance(opts, dict):
        return REDACTED if opts is not None else None
    out = {}
    for k, v in opts.items():
        if k not in HARMLESS_STORAGE_OPTIONS or (k == "token" and not _public(v)):
            out[k] = REDACTED
        else:
            out[k] = redact(v)
    return out


def redact(obj: Any) -> Any:
    """A copy of ``obj`` (config, provenance, a message) that is safe to write: the values of
    credential keys masked (whatever the value), every option under ``storage_options`` /
    ``output_storage_options`` not known to be harmless masked, and in every string what
    is a credential by its form (:func:`redact_text`)."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if str(k) in STORAGE_OPTION_KEYS:
                out[k] = _storage_options(v)
            elif _SECRET_KEY.search(str(k)) and not _public(v):
                out[k] = REDACTED
            else:
                out[k] = redact(v)
        return out
    if isinstance(obj, list | tuple):
        return type(obj)(redact(v) for v in obj)
    if isinstance(obj, str):
        return redact_text(obj)
    return obj


OUTPUT_MARKER = ".rhcloud-output"
"""Written into an output directory when a run takes it: the directory is rhcloud's."""
RUN_FILES = ("provenance.json", "report.html", "results.zarr", "tables", "figures")
"""What a run writes at the top of its output: an earlier run's output is recognised by
these (or by the marker)."""


class OutputError(RhcloudError):
    """The output location cannot take this run's files; the message says why."""


def _output_fs(output: str, storage_options: dict[str, Any] | None):
    """(filesystem, root path) of an output directory or URL."""
    if not is_remote(output):
        return fsspec.filesystem("file"), str(Path(str(output).removeprefix("file://"))
                                               .absolute())
    return fsspec.core.url_to_fs(output, **(storage_options or {}))


def _top_level(fs, root: str) -> list[str]:
    """Names directly under ``root`` (none when it does not exist)."""
    try:
        entries = fs.ls(root, detail=False)
    except FileNotFoundError:
        return []
    root = str(root).rstrip("/")
    return [str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries
            if str(e).rstrip("/") != root]


def claim_output(output: str, storage_options: dict[str, Any] | None = None,
                 keep: tuple[str, ...] = ("cache",)) -> None:
    """Check, before any work, that ``output`` can take a run and is the run's to own:
    not an existing file, creatable and writable (a marker file is written there, and so
    the check is a real write, local or object storage), and either empty, an earlier
    rhcloud output, or holding only ``keep`` (the cache). A directory holding anything
    else is refused, since the run replaces what it holds (:func:`clear_earlier_run`).
    Raises OutputError."""
    shown = redact_text(str(output))
    try:
        fs, root = _output_fs(output, storage_options)
        if fs.isfile(root):
            raise OutputError(f"output {shown} is an existing file, not a directory")
        names = _top_level(fs, root) if fs.isdir(root) else []
    except OutputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any backend's failure, named
        raise OutputError(f"output {shown} cannot be read: {type(exc).__name__}: "
                          f"{redact_text(str(exc))}") from None
    ours = OUTPUT_MARKER in names or any(n in RUN_FILES for n in names)
    foreign = sorted(n for n in names if n not in (*keep, OUTPUT_MARKER, *RUN_FILES))
    if foreign and not ours:
        listed = ", ".join(foreign[:5]) + (" …" if len(foreign) > 5 else "")
        raise OutputError(f"output {shown} holds files no rhcloud run wrote ({listed}); a run "
                          "owns its output directory and replaces what it holds: choose a "
                          "new or empty directory, or an earlier run's output")
    try:
        if not is_remote(output):
            Path(root).mkdir(parents=True, exist_ok=True)
        fs.pipe(f"{root.rstrip('/')}/{OUTPUT_MARKER}",
                b"this directory holds the outputs of an rhcloud run; a new run into it "
                b"replaces everything here except its cache\n")
    except Exception as exc:  # noqa: BLE001 - read-only directory, bucket without rights …
        raise OutputError(f"output {shown} is not writable: {type(exc).__name__}: "
                          f"{redact_text(str(exc))}") from None


def clear_earlier_run(output: str, storage_options: dict[str, Any] | None = None,
                      keep: tuple[str, ...] = ("cache",)) -> list[str]:
    """Remove everything directly under ``output`` but ``keep`` (the cache) and the marker:
    the files of an earlier run that this run may not write (an old ``gls_aic.csv``,
    figures) never sit beside the new ones. Returns the names removed."""
    fs, root = _output_fs(output, storage_options)
    if not fs.isdir(root):
        return []
    removed = []
    for name in _top_level(fs, root):
        if name in (*keep, OUTPUT_MARKER):
            continue
        fs.rm(f"{root.rstrip('/')}/{name}", recursive=True)
        removed.append(name)
    return removed


@contextmanager
def staged_output(output: str, storage_options: dict[str, Any] | None = None,
                  keep: tuple[str, ...] | None = None) -> Iterator[Path]:
    """Yield a local directory to write into; for a remote ``output`` its files are uploaded
    there (same relative paths) when the block ends without error. With ``keep`` the
    output is the run's own: what an earlier run left there, but ``keep``, is removed
    first (local: before the block; remote: before the upload)."""
    if not is_remote(output):
        path = Path(str(output).removeprefix("file://"))
        if keep is not None:
            clear_earlier_run(output, None, keep)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="rhcloud-out-") as tmp:
        local = Path(tmp)
        yield local
        if keep is not None:
            clear_earlier_run(output, storage_options, keep)
        fs, root = fsspec.core.url_to_fs(output, **(storage_options or {}))
        files = sorted(p for p in local.rglob("*") if p.is_file())
        rel = [p.relative_to(local).as_posix() for p in files]
        # names are the run's own (tables/…, figures/…): nothing can escape ``root``
        fs.put([str(p) for p in files], [f"{root.rstrip('/')}/{r}" for r in rel])
