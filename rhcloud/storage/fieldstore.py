"""Regridded fields kept on local disk, one dataset at a time, so that the client's memory
does not grow with the number of member-datasets.

The regrid stage appends each dataset's ``flux`` (g m-2 yr-1) and ``landfrac`` (0..1) on the
reference grid to a Zarr store as soon as its climatology is finished, and keeps only its
attributes. :meth:`FieldStore.fields` hands them back as lazy (Dask) Datasets; the statistics
across datasets (member means, per-cell medians, Table 1, results.zarr) then read the store
block by block. Chunks are one dataset by a band of latitudes (``CHUNK_BYTES`` per dataset), so
a per-cell statistic over every dataset holds a band of every dataset, never whole fields.

The store is on this machine's disk: computations that read it must run here, with Dask's
threaded scheduler (:func:`local_scheduler`), not on a remote cluster's workers.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import xarray as xr
import zarr

CHUNK_BYTES = 2**18  # 256 KiB of float64 per dataset and chunk
VARIABLES = ("flux", "landfrac")


def lat_band(n_lat: int, n_lon: int, chunk_bytes: int = CHUNK_BYTES) -> int:
    """Rows of latitude per chunk for (n_lat, n_lon) float64 fields."""
    return min(n_lat, max(1, chunk_bytes // (8 * n_lon)))


class FieldStore:
    """Append-only store of 2-D fields on one grid (``lat``, ``lon``, bounds), with their
    attributes kept in memory (small: provenance strings and totals)."""

    def __init__(self, path: str | Path, grid: xr.Dataset, chunk_bytes: int = CHUNK_BYTES):
        self.grid = grid[["lat_bnds", "lon_bnds"]]
        shape = (0, grid.sizes["lat"], grid.sizes["lon"])
        chunks = (1, lat_band(shape[1], shape[2], chunk_bytes), shape[2])
        self._group = zarr.open_group(str(path), mode="w")
        self._arrays = {v: self._group.create_array(v, shape=shape, chunks=chunks,
                                                    dtype="float64", fill_value=np.nan)
                        for v in VARIABLES}
        self.attrs: list[dict] = []

    def __len__(self) -> int:
        return len(self.attrs)

    def add(self, field: xr.Dataset) -> None:
        """Append one dataset's ``flux`` and ``landfrac`` (lat, lon) on the store's grid."""
        for v in VARIABLES:
            values = np.asarray(field[v].transpose("lat", "lon").values, dtype="float64")
            if values.shape != self._arrays[v].shape[1:]:
                raise ValueError(f"{field.attrs.get('zstore', '?')}: {v} has shape "
                                 f"{values.shape}, the store's grid {self._arrays[v].shape[1:]}")
            self._arrays[v].append(values[np.newaxis], axis=0)
        self.attrs.append(dict(field.attrs))

    def fields(self) -> list[xr.Dataset]:
        """Every stored dataset as a lazy Dataset (``flux``, ``landfrac``; its attributes)."""
        lazy = {v: da.from_zarr(self._arrays[v]) for v in VARIABLES}
        coords = {"lat": self.grid["lat"], "lon": self.grid["lon"]}
        return [xr.Dataset({v: (("lat", "lon"), lazy[v][i]) for v in VARIABLES},
                           coords=coords, attrs=attrs) for i, attrs in enumerate(self.attrs)]


@contextmanager
def temporary_store(grid: xr.Dataset, chunk_bytes: int = CHUNK_BYTES) -> Iterator[FieldStore]:
    """A FieldStore in a temporary directory (``$TMPDIR``), removed when the block ends."""
    with tempfile.TemporaryDirectory(prefix="rhcloud-fields-") as tmp:
        yield FieldStore(Path(tmp) / "fields.zarr", grid, chunk_bytes)


def local_scheduler():
    """Dask's threaded scheduler for the block, whatever client is the default: the
    stored fields are on this machine's disk."""
    return dask.config.set(scheduler="threads")
