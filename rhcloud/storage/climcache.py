"""A resumable run's memory: per-dataset climatologies cached in Zarr (local or object storage).

An entry is keyed by the dataset's ``zstore``, ``version``, variable, the period, the fx stores
it used and a *fingerprint* of the store's objects (name, size and the store's own checksum,
generation or mtime of every object under the ``zstore``, from one recursive listing), so a
rewritten chunk or re-uploaded store gets a new key and is recomputed. ``CACHE_FORMAT`` is part
of the key: a change to how climatologies are computed bumps it and orphans old entries.

Layout under the cache URL: ``<key>.zarr/`` (the climatology Dataset: ``flux``, ``area``,
``landfrac``, bounds, attributes) and ``<key>.json`` (what the key was made of), written last:
an entry without its JSON (a run killed while writing) is not a hit and is overwritten.
Failures are never cached: a dataset excluded once (a flaky store) is retried next run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import fsspec
import xarray as xr

from rhcloud.storage.paths import storage_options_for

CACHE_FORMAT = 3  # 2: ice-sheet land as no flux, coastline land fraction without sftlf; 3: fx and sign checks
WRITERS = 2  # entries written at once
MAX_PENDING = 16  # entries waiting to be written (each holds one native-grid climatology)
log = logging.getLogger("rhcloud")
# fields of fsspec ``info`` that change when an object's content changes, best first
_CHANGE_FIELDS = ("md5Hash", "crc32c", "ETag", "etag", "generation", "mtime", "LastModified")


def store_fingerprint(url: str, storage_options: dict[str, Any] | None = None) -> str:
    """A hash of every object under ``url`` (its relative name, size and change marker)."""
    fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
    root = root.rstrip("/")
    listing = fs.find(root, detail=True)
    h = hashlib.sha256()
    for name in sorted(listing):
        info = listing[name]
        marker = next((str(info[k]) for k in _CHANGE_FIELDS if info.get(k) is not None), "")
        h.update(f"{name[len(root):]}\0{info.get('size')}\0{marker}\n".encode())
    return h.hexdigest()


class ClimatologyCache:
    """Get and put climatologies under ``url``; ``fresh`` ignores (and overwrites) entries."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None,
                 read_storage_options: dict[str, Any] | None = None, fresh: bool = False):
        self.url = str(url).rstrip("/")
        self.fresh = fresh
        self._opts = storage_options or {}
        self._read_opts = read_storage_options
        self._fs, self._root = fsspec.core.url_to_fs(self.url, **self._opts)
        self._fingerprints: dict[str, str] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.writes = 0
        self.failures: list[str] = []  # entries that could not be written (the run goes on)
        self._writer = ThreadPoolExecutor(WRITERS, thread_name_prefix="rhcloud-cache")
        self._slots = threading.BoundedSemaphore(MAX_PENDING)
        self._pending: list[Future] = []

    def _fingerprint(self, zstore: str) -> str:
        with self._lock:
            hit = self._fingerprints.get(zstore)
        if hit is None:
            hit = store_fingerprint(zstore, storage_options_for(zstore, self._read_opts))
            with self._lock:
                self._fingerprints[zstore] = hit
        return hit

    def key(self, provenance: dict[str, str], period: tuple[int, int]) -> tuple[str, dict]:
        """The entry key of a dataset (and what it was made of); reads the stores' listings."""
        parts = {"format": CACHE_FORMAT, "period": list(period),
                 **{k: provenance.get(k, "") for k in ("zstore", "version", "variable_id",
                                                       "areacella_zstore", "sftlf_zstore",
                                                       "sftgif_zstore")}}
        parts["fingerprints"] = {k: self._fingerprint(parts[k]) for k in
                                 ("zstore", "areacella_zstore", "sftlf_zstore",
                                              "sftgif_zstore") if parts[k]}
        digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]
        return digest, parts

    def _zarr(self, key: str) -> str:
        return f"{self.url}/{key}.zarr"

    @property
    def _zarr_options(self) -> dict[str, Any] | None:
        return storage_options_for(self.url, self._opts)

    def _path(self, key: str, suffix: str) -> str:
        return f"{self._root.rstrip('/')}/{key}{suffix}"

    def has(self, key: str) -> bool:
        """Whether a complete entry exists (and is to be used: not ``fresh``)."""
        return not self.fresh and self._fs.exists(self._path(key, ".json"))

    def get(self, key: str, checked: bool = False) -> xr.Dataset | None:
        """The cached climatology, loaded here, or None (missing, incomplete, unreadable,
        ``fresh``). ``checked``: :meth:`has` just said yes (saves a round trip)."""
        if not checked and not self.has(key):
            return None
        try:
            # read by this process (threads), not by a cluster's workers: a local cache
            # directory is not theirs to see
            ds = xr.open_zarr(self._zarr(key), consolidated=True,
                              storage_options=self._zarr_options).load(scheduler="threads")
        except Exception:  # noqa: BLE001 - an unreadable entry is recomputed, not fatal
            return None
        with self._lock:
            self.hits += 1
        return ds

    def put(self, key: str, parts: dict, clim: xr.Dataset) -> None:
        """Store a finished climatology; the JSON marker is written last."""
        if self._fs.exists(self._path(key, ".json")):
            self._fs.rm(self._path(key, ".json"))
        clim.to_zarr(self._zarr(key), mode="w", consolidated=True, zarr_format=2,
                     storage_options=self._zarr_options)
        self._fs.pipe(self._path(key, ".json"), json.dumps(parts, sort_keys=True).encode())
        with self._lock:
            self.writes += 1

    def put_later(self, key: str, parts: dict, clim: xr.Dataset) -> None:
        """:meth:`put` in a background thread, so that writing an entry (one round trip per
        object, ~25 objects) overlaps computing the next ones; at most ``MAX_PENDING``
        entries wait (this blocks until one is written). :meth:`flush` waits for all."""
        self._slots.acquire()
        future = self._writer.submit(self._put_or_warn, key, parts, clim)
        future.add_done_callback(lambda _: self._slots.release())
        with self._lock:
            self._pending = [f for f in self._pending if not f.done()] + [future]

    def _put_or_warn(self, key: str, parts: dict, clim: xr.Dataset) -> None:
        try:
            self.put(key, parts, clim)
        except Exception as exc:  # noqa: BLE001 - a cache that cannot be written is no cache
            with self._lock:
                self.failures.append(f"{parts.get('zstore', key)}: {type(exc).__name__}: {exc}")
            log.warning("climatology not cached (%s): %s", parts.get("zstore", key), exc)

    def flush(self) -> None:
        """Wait until every entry given to :meth:`put_later` is written (or has failed)."""
        with self._lock:
            pending, self._pending = self._pending, []
        wait(pending)
