"""BLAS threads around dense factorizations.

Multithreaded OpenBLAS is much slower than one thread on small matrices (a 300 x 300
Cholesky took 0.16 s with 2 threads and 0.2 ms with one on the 2-core machine), so the
likelihood code runs small problems single-threaded and large ones on all cores, through
``threadpoolctl``.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator

from threadpoolctl import threadpool_limits

SMALL_N = 4000
"""Below this many cells the dense linear algebra runs on one thread."""

_CORES: contextvars.ContextVar[int | None] = contextvars.ContextVar("rhcloud_cores",
                                                                     default=None)


def cores() -> int:
    """The cores a fit may use: all of the machine's, or the share set by :func:`core_share`
    (a Dask task running beside others on the same host)."""
    share = _CORES.get()
    return share if share is not None else (os.cpu_count() or 1)


@contextlib.contextmanager
def core_share(n: int | None) -> Iterator[None]:
    """Within the block (this thread), large factorizations and the correlation fill use at
    most ``n`` cores (``None``: the whole machine)."""
    token = _CORES.set(None if n is None else max(1, int(n)))
    try:
        yield
    finally:
        _CORES.reset(token)


@contextlib.contextmanager
def blas_threads(n_threads: int | None) -> Iterator[None]:
    """Temporarily use ``n_threads`` BLAS threads (``None``: leave as is)."""
    if n_threads is None:
        yield
        return
    with threadpool_limits(limits=n_threads, user_api="blas"):
        yield


def threads_for(n: int) -> int:
    """BLAS threads for an n x n factorization: 1 below :data:`SMALL_N`, else all cores
    (or the share of :func:`core_share`)."""
    return 1 if n < SMALL_N else cores()
