"""Land-weighted conservative regridding of 2-D fields between rectilinear lat/lon grids.

Grids are the ``xr.Dataset`` objects of :mod:`rhcloud.core.grids` (1-D ``lat``/``lon`` with
``lat_bnds``/``lon_bnds``). Between two such grids the overlap area of source cell (j, k)
and destination cell (i, l) on the sphere of radius R is separable::

    A[(i,l), (j,k)] = R² · Wlat[i, j] · Wlon[l, k]
    Wlat[i, j] = |[sin φ⁰_i, sin φ¹_i] ∩ [sin φ⁰_j, sin φ¹_j]|      (dimensionless)
    Wlon[l, k] = |[λ⁰_l, λ¹_l] ∩ [λ⁰_k, λ¹_k]| modulo 360°           (radians)

so a remap is two sparse matrix products, ``Wlat @ x @ Wlonᵀ``, and conserves the area
integral to round-off. A conservative (area-weighted mean) remap divides that by the
destination area covered by valid source cells. The land-weighted remap regrids
``flux × landfrac`` and ``landfrac`` and divides, so Σ flux·landfrac·area is preserved.
See ``docs/regridding.md`` for the method, its measured accuracy and the alternatives
(``method="xarray-regrid"``, ``method="xesmf"``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
import xarray as xr

from rhcloud.core.grids import cell_area

Method = Literal["exact", "xarray-regrid", "xesmf"]
METHODS: tuple[str, ...] = ("exact", "xarray-regrid", "xesmf")

CONSERVATION_COLUMNS = [
    "name", "member_id", "total_native_PgC_yr", "total_regridded_PgC_yr", "rel_error",
]
G_PER_PG = 1e15


# --------------------------------------------------------------------------------------
# exact overlap weights
# --------------------------------------------------------------------------------------

def _interval_overlaps(src_lo: np.ndarray, src_hi: np.ndarray, dst_lo: np.ndarray,
                       dst_hi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, col, length) of every destination/source interval pair that overlaps.

    Source intervals must not overlap one another; then, sorted by their lower edge, their
    upper edges are sorted too and each destination interval's partners are one contiguous
    run found by two binary searches (O((n+m) log n), no dense n×m matrix)."""
    order = np.argsort(src_lo, kind="stable")
    lo, hi = src_lo[order], src_hi[order]
    start = np.searchsorted(hi, dst_lo, side="right")  # first source ending after dst_lo
    stop = np.searchsorted(lo, dst_hi, side="left")  # first source starting at/after dst_hi
    counts = np.maximum(stop - start, 0)
    rows = np.repeat(np.arange(dst_lo.size), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    idx = np.repeat(start, counts) + offsets
    length = np.minimum(hi[idx], dst_hi[rows]) - np.maximum(lo[idx], dst_lo[rows])
    keep = length > 0
    return rows[keep], order[idx[keep]], length[keep]


def _sorted_bounds(grid: xr.Dataset, name: str) -> np.ndarray:
    b = np.sort(np.asarray(grid[name], dtype=np.float64), axis=1)
    if b.ndim != 2 or b.shape[1] != 2 or not np.all(np.isfinite(b)):
        raise ValueError(f"grid {grid.attrs.get('grid_name', '?')!r}: {name} must be finite (n, 2)")
    return b


def _check_disjoint(lo: np.ndarray, hi: np.ndarray, what: str) -> None:
    order = np.argsort(lo)
    if np.any(lo[order][1:] < hi[order][:-1] - 1e-9):
        raise ValueError(f"source {what} cells overlap one another; rebuild the bounds "
                         "(rhcloud.core.grids.normalize_grid) before regridding")


def lat_overlap_weights(src_grid: xr.Dataset, dst_grid: xr.Dataset) -> sp.csr_array:
    """Wlat (n_dst_lat, n_src_lat): overlaps of the cells' sin-latitude intervals
    (dimensionless; a row sums to the destination cell's sin-latitude width where covered)."""
    s = np.sin(np.radians(np.clip(_sorted_bounds(src_grid, "lat_bnds"), -90.0, 90.0)))
    d = np.sin(np.radians(np.clip(_sorted_bounds(dst_grid, "lat_bnds"), -90.0, 90.0)))
    _check_disjoint(s[:, 0], s[:, 1], "latitude")
    rows, cols, vals = _interval_overlaps(s[:, 0], s[:, 1], d[:, 0], d[:, 1])
    return sp.csr_array((vals, (rows, cols)), shape=(d.shape[0], s.shape[0]))


def lon_overlap_weights(src_grid: xr.Dataset, dst_grid: xr.Dataset) -> sp.csr_array:
    """Wlon (n_dst_lon, n_src_lon): overlaps of the cells' longitude intervals modulo 360°
    (radians). Either grid may start anywhere ([0, 360), [-180, 180), offset centres)."""
    s = _sorted_bounds(src_grid, "lon_bnds")
    d = _sorted_bounds(dst_grid, "lon_bnds")
    s_width, d_width = s[:, 1] - s[:, 0], d[:, 1] - d[:, 0]
    if np.any(s_width > 360.0 + 1e-9) or np.any(d_width > 360.0 + 1e-9):
        raise ValueError("a longitude cell is wider than 360 degrees")
    # Put every lower edge in [0, 360); a destination cell then lies inside [0, 720) and a
    # source copy shifted by -360, 0 or +360 covers every overlap, including across the wrap.
    s_lo, d_lo = np.mod(s[:, 0], 360.0), np.mod(d[:, 0], 360.0)
    _check_disjoint(s_lo, s_lo + s_width, "longitude")
    shifts = np.array([-360.0, 0.0, 360.0])
    rep_lo = (s_lo[None, :] + shifts[:, None]).ravel()
    rep_hi = rep_lo + np.tile(s_width, 3)
    rows, cols, vals = _interval_overlaps(rep_lo, rep_hi, d_lo, d_lo + d_width)
    n_src = s.shape[0]
    # csr from (data, (row, col)) sums duplicates: a near-global cell may meet two copies
    return sp.csr_array((np.radians(vals), (rows, cols % n_src)), shape=(d.shape[0], n_src))


def overlap_weights(src_grid: xr.Dataset,
                    dst_grid: xr.Dataset) -> tuple[sp.csr_array, sp.csr_array]:
    """Exact separable overlap matrices ``(Wlat, Wlon)``: the overlap area of destination
    cell (i, l) and source cell (j, k) is ``R² · Wlat[i, j] · Wlon[l, k]`` (m² for R in m)."""
    return lat_overlap_weights(src_grid, dst_grid), lon_overlap_weights(src_grid, dst_grid)


def area_measure(grid: xr.Dataset) -> np.ndarray:
    """Cell areas on the unit sphere, Δsin φ · Δλ (sr), shape (nlat, nlon)."""
    return np.asarray(cell_area(grid, radius=1.0), dtype=np.float64)


def _remap_sum(x: np.ndarray, wlat: sp.csr_array, wlon: sp.csr_array) -> np.ndarray:
    """``Wlat @ x @ Wlonᵀ`` over the last two axes of ``x`` (any leading axes), in float64.

    Each output element depends only on its own leading index, so results do not depend
    on how the leading axes are chunked (the kernels are column-wise)."""
    x = np.asarray(x, dtype=np.float64)
    *lead, nlat, nlon = x.shape
    m = int(np.prod(lead, dtype=np.int64))
    n_dlat, n_dlon = wlat.shape[0], wlon.shape[0]
    y = wlon @ x.reshape(m * nlat, nlon).T  # (n_dlon, m*nlat)
    y = y.reshape(n_dlon, m, nlat).transpose(2, 1, 0).reshape(nlat, m * n_dlon)
    y = wlat @ y  # (n_dlat, m*n_dlon)
    return y.reshape(n_dlat, m, n_dlon).transpose(1, 0, 2).reshape(*lead, n_dlat, n_dlon)


def _mean_kernel(x: np.ndarray, wlat: sp.csr_array, wlon: sp.csr_array,
                 skipna: bool, dst_measure: np.ndarray) -> np.ndarray:
    """Area-weighted mean; with ``skipna`` over valid source area only, else over the whole
    destination cell (uncovered parts count as zero)."""
    x = np.asarray(x, dtype=np.float64)
    if not skipna:
        return _remap_sum(x, wlat, wlon) / dst_measure
    valid = np.isfinite(x)
    num = _remap_sum(np.where(valid, x, 0.0), wlat, wlon)
    den = _remap_sum(valid, wlat, wlon)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def _land_kernel(flux: np.ndarray, landfrac: np.ndarray, wlat: sp.csr_array,
                 wlon: sp.csr_array, dst_measure: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(flux mean over land, land fraction) on the destination grid, in one pass:
    w = landfrac where flux is valid, Σflux·w·A∩ / Σw·A∩ and Σw·A∩ / A_dst."""
    flux = np.asarray(flux, dtype=np.float64)
    lf = np.clip(np.nan_to_num(np.asarray(landfrac, dtype=np.float64)), 0.0, 1.0)
    w = np.where(np.isfinite(flux), lf, 0.0)
    num = _remap_sum(np.where(w > 0, flux * w, 0.0), wlat, wlon)
    den = _remap_sum(w, wlat, wlon)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan), den / dst_measure


def _majority_kernel(x: np.ndarray, wlat: sp.csr_array, wlon: sp.csr_array,
                     categories: np.ndarray) -> np.ndarray:
    """Category with the largest overlap area per destination cell; NaN where none."""
    best = np.full(x.shape[:-2] + (wlat.shape[0], wlon.shape[0]), np.nan)
    best_area = np.zeros(best.shape)
    for value in categories:  # strict '>' keeps the first (smallest) category on ties
        area = _remap_sum(x == value, wlat, wlon)
        better = area > best_area
        best[better] = value
        best_area[better] = area[better]
    return best


# --------------------------------------------------------------------------------------
# xarray plumbing
# --------------------------------------------------------------------------------------

def _on_grid(field: xr.DataArray, grid: xr.Dataset, role: str) -> xr.DataArray:
    """``field`` with the grid's lat/lon coordinates, after checking they are the same
    (order, size, values to 1e-4 degrees): arithmetic between fields then never misaligns
    on float32-vs-float64 coordinates."""
    for dim in ("lat", "lon"):
        if dim not in field.dims:
            raise ValueError(f"{role} field {field.name!r} has no {dim!r} dimension "
                             f"(dims {field.dims}); rename its coordinates first")
        if field.sizes[dim] != grid.sizes[dim]:
            raise ValueError(f"{role} field {field.name!r}: {dim} has {field.sizes[dim]} "
                             f"points, grid {grid.attrs.get('grid_name', '?')!r} has "
                             f"{grid.sizes[dim]}")
        if dim in field.coords and not np.allclose(np.asarray(field[dim], dtype=float),
                                                   np.asarray(grid[dim], dtype=float),
                                                   atol=1e-4):
            raise ValueError(f"{role} field {field.name!r}: {dim} coordinates differ from "
                             f"grid {grid.attrs.get('grid_name', '?')!r} (normalize to the "
                             "grid's order, e.g. ascending lat and lon in [0, 360))")
    return field.assign_coords(lat=grid["lat"].values, lon=grid["lon"].values)


def _map_to_grid(kernel: Callable[..., Any], fields: xr.DataArray | Sequence[xr.DataArray],
                 dst_grid: xr.Dataset, n_out: int = 1,
                 **kwargs: Any) -> xr.DataArray | tuple[xr.DataArray, ...]:
    """Apply ``kernel(*values, **kwargs)`` over (lat, lon) → destination (lat, lon), with
    ``n_out`` outputs; Dask-parallel over any leading dims (lat/lon made single chunks: a
    2-D climatology is small)."""
    fields = [fields] if isinstance(fields, xr.DataArray) else list(fields)
    fields = [f.chunk({"lat": -1, "lon": -1}) if f.chunks is not None else f for f in fields]
    core = [["lat", "lon"]]
    out = xr.apply_ufunc(
        kernel, *fields,
        input_core_dims=core * len(fields), output_core_dims=core * n_out,
        exclude_dims={"lat", "lon"}, dask="parallelized", output_dtypes=[np.float64] * n_out,
        dask_gufunc_kwargs={"output_sizes": {"lat": dst_grid.sizes["lat"],
                                             "lon": dst_grid.sizes["lon"]}},
        kwargs=kwargs,
    )
    coords = {"lat": dst_grid["lat"], "lon": dst_grid["lon"]}
    if n_out == 1:
        return out.assign_coords(coords)
    return tuple(o.assign_coords(coords) for o in out)


def _import_xesmf() -> Any:
    try:
        import xesmf
    except Exception as err:  # ImportError, or esmpy failing to load ESMF
        raise ImportError(
            "method='xesmf' needs xesmf with ESMF's esmpy, which is not importable here "
            f"({type(err).__name__}: {err}); use method='exact' (the default)") from err
    return xesmf


def _xesmf_grid(grid: xr.Dataset) -> xr.Dataset:
    lat_b, lon_b = _sorted_bounds(grid, "lat_bnds"), _sorted_bounds(grid, "lon_bnds")
    return xr.Dataset(coords={
        "lat": grid["lat"].values, "lon": grid["lon"].values,
        "lat_b": np.append(lat_b[:, 0], lat_b[-1, 1]), "lon_b": np.append(lon_b[:, 0], lon_b[-1, 1]),
    })


def _remap_mean(field: xr.DataArray, src_grid: xr.Dataset, dst_grid: xr.Dataset,
                method: str, skipna: bool) -> xr.DataArray:
    """Area-weighted mean of ``field`` on ``dst_grid`` by ``method`` (float64)."""
    field = _on_grid(field, src_grid, "source").astype(np.float64)
    if method == "exact":
        wlat, wlon = overlap_weights(src_grid, dst_grid)
        return _map_to_grid(_mean_kernel, field, dst_grid, wlat=wlat, wlon=wlon,
                            skipna=skipna, dst_measure=area_measure(dst_grid))
    if method == "xarray-regrid":
        import xarray_regrid  # noqa: F401  (registers the .regrid accessor)

        target = xr.Dataset(coords={"lat": dst_grid["lat"].values, "lon": dst_grid["lon"].values})
        out = field.regrid.conservative(target, latitude_coord="lat", skipna=skipna,
                                        nan_threshold=1.0)
        return out.assign_coords(lat=dst_grid["lat"], lon=dst_grid["lon"])
    if method == "xesmf":
        xe = _import_xesmf()
        regridder = xe.Regridder(_xesmf_grid(src_grid), _xesmf_grid(dst_grid), "conservative",
                                 unmapped_to_nan=True)
        out = regridder(field, skipna=skipna, na_thresh=1.0) if skipna else regridder(field)
        return out.assign_coords(lat=dst_grid["lat"], lon=dst_grid["lon"])
    raise ValueError(f"unknown regridding method {method!r}; choose one of {METHODS}")


# --------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------

def regrid_conservative(field: xr.DataArray, src_grid: xr.Dataset, dst_grid: xr.Dataset,
                        *, method: Method = "exact") -> xr.DataArray:
    """Area-weighted (first-order conservative) mean of ``field`` (dims ``(..., lat, lon)``,
    numpy or Dask) on ``dst_grid``. NaN source cells contribute nothing: each destination
    value is the mean over its valid overlapping source area; NaN where there is none.
    Units are those of ``field``; floating dtypes are kept (computed in float64)."""
    out = _remap_mean(field, src_grid, dst_grid, method, skipna=True)
    out = out.astype(field.dtype if np.issubdtype(field.dtype, np.floating) else np.float64)
    out.attrs = {**field.attrs, "regrid_method": f"conservative ({method})",
                 "regrid_target": dst_grid.attrs.get("grid_name", "")}
    return out.rename(field.name)


def covered_fraction(field: xr.DataArray, src_grid: xr.Dataset,
                     dst_grid: xr.Dataset) -> xr.DataArray:
    """Fraction (0..1) of each destination cell's area covered by valid (non-NaN) source
    cells of ``field`` (exact weights)."""
    valid = field.notnull().astype(np.float64)
    out = _remap_mean(valid, src_grid, dst_grid, "exact", skipna=False)
    out.attrs = {"units": "1", "long_name": "fraction of cell area covered by valid source data"}
    return out.rename("covered_fraction")


def regrid_land_weighted(flux: xr.DataArray, landfrac: xr.DataArray, src_grid: xr.Dataset,
                         dst_grid: xr.Dataset, *, min_landfrac: float = 0.0,
                         method: Method = "exact") -> xr.Dataset:
    """Land-weighted conservative regridding of a flux (e.g. g m-2 yr-1 per land area).

    With w = landfrac (0..1) where ``flux`` is valid and 0 elsewhere (a land cell without a
    flux value counts as no land for this field), the target land fraction and flux are::

        landfrac_dst = Σ w·A∩ / A_dst            flux_dst = Σ flux·w·A∩ / Σ w·A∩

    so Σ flux_dst·landfrac_dst·A_dst = Σ flux·w·A_src (exact for ``method="exact"``, to
    round-off, when the source covers the target cells). Cells with
    ``landfrac_dst <= min_landfrac`` are NaN in ``flux``. With the default 0 only cells with
    no land at all are masked, so nothing is lost; a higher threshold moves the masked cells'
    values to ``flux_dropped`` (NaN elsewhere), so the dropped total is reported, not lost:
    ``land_total(flux)`` + ``land_total(flux_dropped)`` equals the native total.

    Returns a Dataset with ``flux`` (dtype of the input), ``landfrac`` (float64, unmasked)
    and ``flux_dropped``, on ``dst_grid``.
    """
    if not 0.0 <= min_landfrac < 1.0:
        raise ValueError(f"min_landfrac must be in [0, 1), got {min_landfrac}")
    flux = _on_grid(flux, src_grid, "flux")
    landfrac = _on_grid(landfrac, src_grid, "land fraction")
    if landfrac.chunks is None and float(landfrac.max(skipna=True).fillna(0)) > 1.0 + 1e-6:
        raise ValueError(f"land fraction {landfrac.name!r} exceeds 1: pass a fraction 0..1 "
                         "(divide CMIP6 sftlf, in %, by 100)")
    lf = landfrac.drop_vars([c for c in landfrac.coords if c not in ("lat", "lon")])
    if method == "exact":  # one fused pass: fewer xarray/Dask layers than the generic path
        wlat, wlon = overlap_weights(src_grid, dst_grid)
        mean_flux, land = _map_to_grid(_land_kernel, [flux, lf], dst_grid, n_out=2,
                                       wlat=wlat, wlon=wlon,
                                       dst_measure=area_measure(dst_grid))
    else:
        lf = lf.astype(np.float64).fillna(0.0).clip(0.0, 1.0)
        w = lf.where(flux.notnull(), 0.0)
        fw = (flux.astype(np.float64) * w).fillna(0.0)
        num = _remap_mean(fw, src_grid, dst_grid, method, skipna=False)
        land = _remap_mean(w, src_grid, dst_grid, method, skipna=False)
        mean_flux = num / land.where(land > 0)
    kept = land > min_landfrac
    dtype = flux.dtype if np.issubdtype(flux.dtype, np.floating) else np.float64
    attrs = {**flux.attrs, "cell_methods": "area: mean where land",
             "regrid_method": f"land-weighted conservative ({method})",
             "regrid_target": dst_grid.attrs.get("grid_name", ""),
             "min_landfrac": min_landfrac}
    out = xr.Dataset({
        "flux": mean_flux.where(kept).astype(dtype).assign_attrs(attrs),
        "landfrac": land.assign_attrs(
            units="1", long_name="land fraction of the target cell (land carrying flux)"),
        "flux_dropped": mean_flux.where(~kept).astype(dtype).assign_attrs(
            {**attrs, "long_name": f"flux in cells with 0 < landfrac <= {min_landfrac} "
                                   "(masked in flux)"}),
    })
    return out


def regrid_majority(classes: xr.DataArray, src_grid: xr.Dataset, dst_grid: xr.Dataset,
                    *, categories: Sequence[float] | None = None) -> xr.DataArray:
    """Categorical aggregation (e.g. lithology): each destination cell takes the class
    with the largest overlap area among valid source cells (never an average). Ties go to
    the smallest class value; NaN where no valid class overlaps. ``categories`` defaults to
    the distinct finite values of ``classes`` (computed, if Dask-backed)."""
    classes = _on_grid(classes, src_grid, "class")
    if categories is None:
        values = np.unique(np.asarray(classes.data if classes.chunks is None
                                      else classes.data.compute()))
        categories = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    cats = np.sort(np.asarray(categories, dtype=np.float64))
    wlat, wlon = overlap_weights(src_grid, dst_grid)
    out = _map_to_grid(_majority_kernel, classes.astype(np.float64), dst_grid,
                       wlat=wlat, wlon=wlon, categories=cats)
    out.attrs = {**classes.attrs, "regrid_method": "majority by overlap area",
                 "flag_values": cats.tolist(),
                 "regrid_target": dst_grid.attrs.get("grid_name", "")}
    return out.rename(classes.name)


def land_total(flux: xr.DataArray | np.ndarray, landfrac: xr.DataArray | np.ndarray,
               area: xr.DataArray | np.ndarray) -> float:
    """Σ flux·landfrac·area in Pg yr-1, for flux in g m-2 yr-1, landfrac 0..1 and area in
    m²; NaN terms count as zero. Arrays are combined by position (shapes must match), so
    float32 coordinates cannot silently misalign."""
    parts = [a.data if isinstance(a, xr.DataArray) else np.asarray(a)
             for a in (flux, landfrac, area)]
    shapes = {np.shape(p)[-2:] for p in parts}
    if len(shapes) != 1:
        raise ValueError(f"flux, landfrac and area must share (lat, lon) shapes, got {shapes}")
    prod = parts[0].astype(np.float64) * parts[1] * parts[2]
    total = np.nansum(prod)
    return float(total.compute() if hasattr(total, "compute") else total) / G_PER_PG


def conservation_row(name: str, member_id: str, native_total: float,
                     regridded_total: float) -> dict[str, Any]:
    """One row of ``tables/regrid_conservation.csv``; ``rel_error`` is signed,
    (regridded − native) / |native| (0 when both are 0)."""
    if native_total == 0:
        rel = 0.0 if regridded_total == 0 else float(np.sign(regridded_total) * np.inf)
    else:
        rel = (regridded_total - native_total) / abs(native_total)
    return {"name": name, "member_id": member_id, "total_native_PgC_yr": float(native_total),
            "total_regridded_PgC_yr": float(regridded_total), "rel_error": float(rel)}


def conservation_check(name: str, member_id: str, flux: xr.DataArray,
                       landfrac: xr.DataArray, src_grid: xr.Dataset, regridded: xr.Dataset,
                       dst_grid: xr.Dataset) -> dict[str, Any]:
    """Conservation row for one dataset: native Σ flux·landfrac·area on ``src_grid`` against
    the kept total of ``regrid_land_weighted``'s output on ``dst_grid`` (Pg yr-1)."""
    native = land_total(flux, landfrac.fillna(0).clip(0, 1), cell_area(src_grid))
    regridded_total = land_total(regridded["flux"], regridded["landfrac"], cell_area(dst_grid))
    return conservation_row(name, member_id, native, regridded_total)


def conservation_table(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """The ``tables/regrid_conservation.csv`` frame: the output contract's columns, then
    ``variable_id`` (a model has an rh and an npp row; empty for observation files) and
    ``ice_sheet_missing_share`` (the share of the land area a model leaves missing over the
    ice sheets, counted as no flux; empty for observation files)."""
    return pd.DataFrame(list(rows), columns=[*CONSERVATION_COLUMNS, "variable_id",
                                             "ice_sheet_missing_share"])
