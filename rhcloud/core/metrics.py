"""Statistics on the reference grid: the products' median and MAD, per-model metrics
(Table 1 of the paper), residual fields and global totals. Pure functions on xarray objects.

Definitions (units g C m-2 yr-1 unless stated):

- obs median  M = median over products, per cell; MAD = median over products of |x − M|
  (unscaled, as in the paper).
- land cells: cells where M and the model are both finite.
- n_within_mad = #{cells : |model − M| ≤ MAD}.
- RMSE = sqrt(mean over land cells of (model − M)²), unweighted (area-weighted optional).
- R² = squared Pearson correlation of model and M over land cells, unweighted by default;
  ``weights`` (cell area × land fraction) gives the area-weighted variant.
- residual = model − M; the ESM residual is the median (and the mean) over models, each
  model counted once (its members averaged first) unless ``per_member``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import xarray as xr


def obs_median_mad(products: xr.DataArray, dim: str = "product") -> tuple[xr.DataArray,
                                                                            xr.DataArray]:
    """Per-cell median of the products and their median absolute deviation (unscaled).
    A cell needs every product to be finite."""
    products = products.load()
    complete = products.notnull().all(dim)
    med = _median(products, dim).where(complete)
    mad = _median(np.abs(products - med), dim).where(complete)
    return med.rename("obs_median"), mad.rename("obs_mad")


def _median(da: xr.DataArray, dim: str) -> xr.DataArray:
    """NaN-skipping median, computed now; ocean cells are all-NaN by design, so numpy's
    warning about them says nothing."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
        return da.median(dim).compute()


def member_mean(models: xr.DataArray) -> xr.DataArray:
    """Each model's member mean: ``models`` (dataset, lat, lon) with a ``source_id``
    coordinate → (model, lat, lon), ``model`` labelled by source_id (a dimension of its own:
    ``source_id`` stays the datasets' coordinate)."""
    return models.groupby("source_id").mean("dataset").rename(source_id="model")


def _pearson_r2(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    w = w / w.sum()
    mx, my = (w * x).sum(), (w * y).sum()
    cov = (w * (x - mx) * (y - my)).sum()
    vx, vy = (w * (x - mx) ** 2).sum(), (w * (y - my) ** 2).sum()
    return float(cov**2 / (vx * vy)) if vx > 0 and vy > 0 else float("nan")


def metrics(model: xr.DataArray, median: xr.DataArray, mad: xr.DataArray,
            weights: xr.DataArray | None = None) -> dict[str, float]:
    """Table 1 metrics of one model field against the obs median (see module docstring)."""
    m = np.asarray(model.values, dtype=float).ravel()
    o = np.asarray(median.values, dtype=float).ravel()
    d = np.asarray(mad.values, dtype=float).ravel()
    ok = np.isfinite(m) & np.isfinite(o)
    w = np.ones_like(m) if weights is None else np.asarray(weights.values, float).ravel()
    ok &= np.isfinite(w) & (w > 0)
    m, o, d, w = m[ok], o[ok], d[ok], w[ok]
    err = m - o
    return {
        "n_cells": int(ok.sum()),
        "n_within_mad": int(np.sum(np.abs(err) <= d)),
        "rmse": float(np.sqrt(np.sum(w * err**2) / np.sum(w))) if ok.any() else float("nan"),
        "r2": _pearson_r2(m, o, w) if ok.sum() > 2 else float("nan"),
        "bias": float(np.sum(w * err) / np.sum(w)) if ok.any() else float("nan"),
    }


def model_metrics(models: xr.DataArray, median: xr.DataArray, mad: xr.DataArray,
                  weights: xr.DataArray | None = None) -> pd.DataFrame:
    """One row per dataset (source_id, member_id) with Table 1's metrics."""
    rows = []
    for i in range(models.sizes["dataset"]):
        field = models.isel(dataset=i)
        rows.append({"source_id": str(field["source_id"].values),
                     "member_id": str(field["member_id"].values),
                     **metrics(field, median, mad, weights)})
    return pd.DataFrame(rows)


def residuals(models: xr.DataArray, median: xr.DataArray) -> xr.DataArray:
    """Per-dataset residual field, model − obs median (g C m-2 yr-1)."""
    return (models - median).rename("residual")


def esm_residual(fields: xr.DataArray, median: xr.DataArray,
                 dim: str = "model") -> xr.Dataset:
    """The ESM residual fields: median and mean over ``dim`` of field − obs median.
    ``fields`` are the models' member means (``model``: each model counts once) or every
    dataset (``dataset``)."""
    res = fields - median
    # the mean summed one field per block, whether ``fields`` are in memory or lazy on the
    # field store: its last bits, to which the drivers' fits of it are sensitive, never
    # depend on how the fields are held
    blocked = fields.chunk({dim: 1}) - median
    return xr.Dataset({
        "residual_median": _median(res, dim).assign_attrs(
            units="g m-2 yr-1", long_name="median over models of model - obs median"),
        "residual_mean": blocked.mean(dim).compute().assign_attrs(
            units="g m-2 yr-1", long_name="mean over models of model - obs median"),
    })


def zonal_mean(field: xr.DataArray, landfrac: xr.DataArray) -> xr.DataArray:
    """Zonal mean with oceans counted as zero: Σ_lon flux × landfrac / n_lon (g m-2 yr-1)."""
    return (field.fillna(0) * landfrac.fillna(0)).mean("lon")


def meridional_mean(field: xr.DataArray, landfrac: xr.DataArray,
                    area: xr.DataArray) -> xr.DataArray:
    """Meridional (area-weighted over latitude) mean with oceans counted as zero."""
    w = area.isel(lon=0)
    return ((field.fillna(0) * landfrac.fillna(0)) * w).sum("lat") / w.sum()
