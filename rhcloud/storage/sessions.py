"""Close the object stores' HTTP sessions before the interpreter exits.

Zarr opens its stores with ``asynchronous=True`` filesystems whose aiohttp sessions live on
zarr's own event loop. gcsfs closes a session from a weakref finalizer at interpreter exit;
for a filesystem without a loop of its own (zarr's) it sends ``close()`` to fsspec's IO loop
when that one runs (it does once anything synchronous touched a bucket: the catalog, the
cache), and aiohttp refuses a future of another loop: a traceback after every successful run
(gcsfs 2026.10). Closing each session on the loop it was made on, while both loops still
run, leaves the finalizer nothing to do.
"""

from __future__ import annotations

import asyncio
import concurrent.futures

CLOSE_TIMEOUT_S = 2.0  # per session; a stuck close must not hold the exit


def _sessions() -> list:
    """Open aiohttp sessions of the cached fsspec HTTP-based filesystems (gcsfs, http)."""
    found = []
    for module, name in (("gcsfs", "GCSFileSystem"), ("fsspec.implementations.http",
                                                      "HTTPFileSystem")):
        try:
            cls = getattr(__import__(module, fromlist=[name]), name)
        except ImportError:
            continue
        for fs in list(getattr(cls, "_cache", {}).values()):
            session = getattr(fs, "_session", None)
            if session is not None and not session.closed:
                found.append(session)
    return found


def close_http_sessions() -> int:
    """Close every open session on its own loop; return how many were closed. Sessions whose
    loop no longer runs are left to their finalizer (which then closes the connector)."""
    closed = 0
    for session in _sessions():
        loop = getattr(session, "_loop", None)
        if loop is None or loop.is_closed() or not loop.is_running():
            continue
        try:
            asyncio.run_coroutine_threadsafe(session.close(), loop).result(CLOSE_TIMEOUT_S)
            closed += 1
        except (concurrent.futures.TimeoutError, RuntimeError, OSError):
            pass  # best effort at exit: the run's results are already written
    return closed
