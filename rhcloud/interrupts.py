"""Ctrl-C that is never lost.

Python raises the ``KeyboardInterrupt`` of a SIGINT wherever the main thread happens to be,
and an exception raised inside a finalizer (``__del__``, a ``weakref`` callback, a garbage
collection pass) is printed as "Exception ignored in …" and dropped: a run interrupted at
that moment carried on and wrote its outputs. While :func:`watching` is active the signal
is also recorded, and :func:`checkpoint` (between stages, before outputs are committed)
raises it again if it was swallowed.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_received = threading.Event()


def _on_sigint(signum, frame) -> None:
    _received.set()
    signal.default_int_handler(signum, frame)


@contextmanager
def watching() -> Iterator[None]:
    """Record SIGINT for the duration of the block (main thread only: elsewhere Python
    cannot install a handler, and the block runs unwatched)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received.clear()
    previous = signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _received.clear()


def interrupted() -> bool:
    """Whether a SIGINT arrived inside the current :func:`watching` block."""
    return _received.is_set()


def checkpoint() -> None:
    """Raise ``KeyboardInterrupt`` if a SIGINT arrived (and was perhaps swallowed)."""
    if _received.is_set():
        raise KeyboardInterrupt
