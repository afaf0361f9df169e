"""Finished fits of the drivers stage kept between runs, so that a rerun, or a batch job
resumed after its pod was preempted in the drivers stage, refits only what it had not done.

The drivers are the costliest stage of a run (16 of a paper-size run's 17 minutes): per
residual, 10 correlated GLS fits and the GAMM (fitted with and without the factor). Each GLS
fit, and each GAMM selection, is one JSON object under the cache URL. Its key is a hash of
everything it depends on: the data (response, covariates, factor, coordinates, the GLS design
matrix), the likelihood (exact or Vecchia and its neighbours), the distance metric, the
structure and nugget (for the GAMM: the chosen GLS fit it starts from), the options, the
rhcloud version and ``FIT_FORMAT`` (bumped when the fitting changes). A changed residual,
covariate, grid or option is therefore a new key.

JSON, never pickle: a cache in a shared bucket is data. Only the fit classes of
``rhcloud.drivers`` are rebuilt from it; floats round-trip exactly (``repr``), NaN included.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import fsspec
import numpy as np
import pandas as pd

from .gamm import GAMMFit, GAMMSelection, Smooth
from .gls import GLSFit, Memo

FIT_FORMAT = 7
T = TypeVar("T")
log = logging.getLogger("rhcloud")
_CLASSES = {c.__name__: c for c in (GLSFit, GAMMFit, GAMMSelection, Smooth)}


def digest(*parts: Any) -> str:
    """A hash of arrays (their dtype, shape and bytes), frames (columns and values) and
    JSON-able options, with the rhcloud version and ``FIT_FORMAT``."""
    from rhcloud._version import __version__

    h = hashlib.sha256(f"{FIT_FORMAT}\0{__version__}\0".encode())
    for p in parts:
        if isinstance(p, pd.DataFrame):
            h.update(json.dumps(list(map(str, p.columns))).encode())
            values = [p[c].to_numpy() for c in p.columns]
        else:
            values = [p]
        for a in values:
            if isinstance(a, np.ndarray) and a.dtype != object:
                a = np.ascontiguousarray(a)
                h.update(f"{a.dtype.str}{a.shape}".encode())
                h.update(a.tobytes())
            elif isinstance(a, np.ndarray):  # strings, categories
                h.update(json.dumps([str(v) for v in a]).encode())
            else:
                h.update(json.dumps(a, sort_keys=True, default=str).encode())
            h.update(b"\1")
    return h.hexdigest()


def _encode(v: Any) -> Any:
    if dataclasses.is_dataclass(v) and type(v).__name__ in _CLASSES:
        return {"__type__": type(v).__name__,
                "fields": {f.name: _encode(getattr(v, f.name)) for f in dataclasses.fields(v)}}
    if isinstance(v, np.ndarray):
        return {"__ndarray__": v.tolist(), "dtype": v.dtype.str, "shape": list(v.shape)}
    if isinstance(v, pd.DataFrame):
        return {"__frame__": {c: _encode(v[c].to_numpy()) for c in v.columns},
                "columns": list(v.columns)}
    if isinstance(v, tuple):
        return {"__tuple__": [_encode(x) for x in v]}
    if isinstance(v, list):
        return [_encode(x) for x in v]
    if isinstance(v, dict):
        if not all(isinstance(k, str) for k in v):
            raise TypeError("only string keys can be stored")
        return {"__dict__": {k: _encode(x) for k, x in v.items()}}
    if isinstance(v, np.generic):
        return v.item()
    if v is None or isinstance(v, bool | int | float | str):
        return v
    raise TypeError(f"cannot store {type(v).__name__} in the fit cache")


def _decode(v: Any) -> Any:
    if isinstance(v, list):
        return [_decode(x) for x in v]
    if not isinstance(v, dict):
        return v
    if "__type__" in v:
        cls = _CLASSES[v["__type__"]]  # KeyError: not a fit class, the entry is refitted
        return cls(**{k: _decode(x) for k, x in v["fields"].items()})
    if "__ndarray__" in v:
        dtype = np.dtype(v["dtype"])
        return np.array(v["__ndarray__"], dtype=dtype).reshape(v["shape"])
    if "__frame__" in v:
        return pd.DataFrame({c: _decode(v["__frame__"][c]) for c in v["columns"]},
                            columns=v["columns"])
    if "__tuple__" in v:
        return tuple(_decode(x) for x in v["__tuple__"])
    if "__dict__" in v:
        return {k: _decode(x) for k, x in v["__dict__"].items()}
    raise ValueError(f"unexpected object with keys {sorted(v)}")


def to_json(fit: Any) -> str:
    """A fit (GLSFit, GAMMSelection, ...) as JSON."""
    return json.dumps(_encode(fit))


def from_json(text: str) -> Any:
    """The fit that :func:`to_json` wrote (only the fit classes of ``rhcloud.drivers``)."""
    return _decode(json.loads(text))


class FitCache:
    """Fits under ``url`` (a directory or object-store URL); ``fresh`` refits everything and
    overwrites the entries. The cache never fails a fit: a damaged entry is refitted, an
    unwritable cache is logged and listed in ``failures``."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None,
                 fresh: bool = False):
        self.url = str(url).rstrip("/")
        self.fresh = fresh
        self._fs, self._root = fsspec.core.url_to_fs(self.url, **(storage_options or {}))
        self.hits = 0
        self.fitted = 0
        self.failures: list[str] = []  # entries that could not be written (the run goes on)

    def _path(self, key: str) -> str:
        return f"{self._root.rstrip('/')}/{key}.json"

    def _get(self, key: str, kind: type) -> Any:
        if self.fresh:
            return None
        try:
            fit = from_json(self._fs.cat_file(self._path(key)).decode())
        except FileNotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001 - a damaged entry is refitted, not fatal
            log.warning("fit cache entry %s unreadable (%s): refitting", key, exc)
            return None
        if not isinstance(fit, kind):
            log.warning("fit cache entry %s holds a %s: refitting", key, type(fit).__name__)
            return None
        return fit

    def _put(self, key: str, fit: Any) -> None:
        try:
            self._fs.makedirs(self._root, exist_ok=True)
            self._fs.pipe_file(self._path(key), to_json(fit).encode())
        except Exception as exc:  # noqa: BLE001 - the cache never sinks a run
            self.failures.append(f"{type(exc).__name__}: {exc}")
            log.warning("fit cache %s not written (%s)", self.url, exc)

    def cached(self, key: str, kind: type[T], make: Callable[[], T]) -> T:
        """The ``kind`` stored under ``key``, or ``make()`` stored there."""
        fit = self._get(key, kind)
        if fit is not None:
            self.hits += 1
            return fit
        fit = make()
        self.fitted += 1
        self._put(key, fit)
        return fit

    def lookup(self, key: str, kind: type[T]) -> T | None:
        """The ``kind`` stored under ``key`` (counted as a hit), or None (``fresh``: always
        None). With :meth:`store`, :meth:`cached` split for fits made elsewhere (a Dask
        task): the client looks up, the task fits, the client stores."""
        fit = self._get(key, kind)
        if fit is not None:
            self.hits += 1
        return fit

    def store(self, key: str, fit: Any) -> None:
        """Keep a fit made elsewhere under ``key`` (counted as fitted; never raises)."""
        self.fitted += 1
        self._put(key, fit)

    def memo(self, inputs: str) -> Memo:
        """For :func:`rhcloud.drivers.gls.fit_table`: the GLS fit of (structure, nugget) on
        the inputs hashed as ``inputs``."""
        return lambda structure, nugget, fit_one: self.cached(
            digest(inputs, "gls", structure, nugget), GLSFit,
            lambda: fit_one(structure, nugget))
