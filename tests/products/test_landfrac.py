"""A land fraction for every product: the coastline's on the product's own grid, or a file
the entry names (on the product's grid, else an error naming the file); the total is
Σ flux × area × landfrac of the product's own grid. And the real observations of
``../shared/data/real-fields`` read as covariates (HWSD soil carbon with two fill values and
units spelled ``Kg/m2``; WFDEI temperature)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from rhcloud.core.grids import cell_area, regular_grid
from rhcloud.core.landmask import land_fraction
from rhcloud.products import ProductError, grid_of, native_total, read_entry

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real-fields"
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason="../shared/data/real-fields absent")


def _product(path: Path, grid: xr.Dataset, rng: np.random.Generator) -> np.ndarray:
    """A 2-D annual product (g C m-2 yr-1) on ``grid``, data on cells with any land."""
    lf = land_fraction(grid)
    flux = np.where(lf > 0, rng.uniform(50.0, 800.0, lf.shape), np.nan)
    ds = xr.Dataset({"rh": (("lat", "lon"), flux, {"units": "g C m-2 yr-1"}),
                     "lat_bnds": grid["lat_bnds"], "lon_bnds": grid["lon_bnds"]},
                    coords={"lat": ("lat", grid["lat"].values, {"bounds": "lat_bnds"}),
                            "lon": ("lon", grid["lon"].values, {"bounds": "lon_bnds"})})
    ds.to_netcdf(path)
    return flux


@pytest.fixture(scope="module")
def product(tmp_path_factory):
    grid = regular_grid(45, 72, lon0=0.0)  # Konings' 4° × 5°
    path = tmp_path_factory.mktemp("p") / "mine.nc"
    return path, grid, _product(path, grid, np.random.default_rng(5))


def test_product_total_is_flux_area_landfrac_of_its_own_grid(product):
    path, grid, flux = product
    ds = read_entry({"name": "mine", "reader": "netcdf", "path": str(path),
                     "variable": "rh"}).compute()
    assert ds.attrs["landfrac_source"].startswith("coastline")
    lf = land_fraction(grid)
    want = np.nansum(flux * cell_area(grid).values * lf) / 1e15
    assert native_total(ds) == pytest.approx(want, rel=1e-12)
    # the old fallback (all land where there is data) is far off on a 4° × 5° grid
    as_if_land = np.nansum(flux * cell_area(grid).values) / 1e15
    assert as_if_land > 1.1 * want


def test_landfrac_file_on_the_products_grid(product, tmp_path):
    path, grid, flux = product
    lf = np.clip(land_fraction(grid) * 1.1, 0, 1) * 100.0
    lf_path = tmp_path / "landfrac.nc"
    xr.Dataset({"sftlf": (("lat", "lon"), lf, {"units": "%"})},
               coords={"lat": grid["lat"].values, "lon": grid["lon"].values}
               ).to_netcdf(lf_path)
    ds = read_entry({"name": "mine", "reader": "netcdf", "path": str(path), "variable": "rh",
                     "landfrac": str(lf_path)}).compute()
    assert ds.attrs["landfrac_source"] == f"file {lf_path}"
    want = np.nansum(flux * cell_area(grid_of(ds)).values * lf / 100.0) / 1e15
    assert native_total(ds) == pytest.approx(want, rel=1e-12)


def test_landfrac_file_on_another_grid_names_the_file(product, tmp_path):
    path, _, _ = product
    other = regular_grid(36, 72, lon0=0.0)
    lf_path = tmp_path / "landfrac_5deg.nc"
    xr.Dataset({"landfrac": (("lat", "lon"), land_fraction(other))},
               coords={"lat": other["lat"].values, "lon": other["lon"].values}
               ).to_netcdf(lf_path)
    with pytest.raises(ProductError) as err:
        read_entry({"name": "mine", "reader": "netcdf", "path": str(path), "variable": "rh",
                    "landfrac": str(lf_path)})
    msg = str(err.value)
    assert str(lf_path) in msg and "does not match the grid of" in msg and str(path) in msg


@needs_real
def test_hwsd_reads_as_soc_with_two_fill_values_and_kg_m2():
    raw = xr.open_dataset(REAL / "HWSD_soilc_0.5x0.5.nc", decode_cf=False)["soilc"]
    assert raw.attrs["units"] == "Kg/m2"
    fills = {float(raw.attrs["_FillValue"]), float(raw.attrs["missing_value"])}
    assert len(fills) == 2
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        ds = read_entry({"name": "SOC", "reader": "hwsd",
                         "path": str(REAL / "HWSD_soilc_0.5x0.5.nc")}).compute()
    # both fill values decoded, as intended: xarray's warning about them is not shown
    assert not [w for w in seen if "fill values" in str(w.message)], seen
    v = ds["value"].values
    assert ds["value"].attrs["units"] == "g m-2"
    values = raw.values.astype(np.float64)
    good = ~np.isin(values, list(fills))
    assert np.isfinite(v).sum() == good.sum()  # both fills missing, nothing else
    assert np.nanmax(v) == pytest.approx(values[good].max() * 1000.0, rel=1e-6)
    assert np.nanmin(v) >= 0.0


@needs_real
def test_wfdei_reads_as_mat_in_degc():
    raw = xr.open_dataset(REAL / "WFDEI_tas_0.5x0.5.nc")["tas"]
    ds = read_entry({"name": "MAT", "reader": "gswp3", "variable": "tas",
                     "path": str(REAL / "WFDEI_tas_0.5x0.5.nc"), "units": "degC"}).compute()
    assert ds["value"].attrs["units"] == "degC"
    assert np.nanmax(ds["value"].values) == pytest.approx(float(raw.max()), rel=1e-6)
    assert np.isfinite(ds["value"].values).sum() == int(np.isfinite(raw.values).sum())
