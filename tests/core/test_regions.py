"""Region masks on the reference grid: fractions partition every cell, regional totals and
the remainder add up to the global land total, and the global row of the regional metrics
is Table 1."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from rhcloud.core import grids, regions
from rhcloud.core.conservative import land_total
from rhcloud.core.metrics import metrics


@pytest.fixture(scope="module")
def grid():
    return grids.gaussian_grid(32, 64)


@pytest.fixture(scope="module")
def fractions(grid):
    return regions.region_fractions(grid, ("ar6", "band"), resolution=0.5)


def test_band_fractions_are_exact_area_shares(grid):
    f = regions.band_fractions(grid)
    np.testing.assert_allclose(f.sum("region"), 1.0, rtol=0, atol=1e-14)
    # the tropics' area share of the sphere is sin(23.5°)
    area = grids.cell_area(grid, radius=1.0)
    share = float((f.sel(region="tropics") * area).sum() / area.sum())
    assert share == pytest.approx(np.sin(np.radians(23.5)), rel=1e-12)
    boreal = float((f.sel(region="boreal") * area).sum() / area.sum())
    assert boreal == pytest.approx((1 - np.sin(np.radians(50.0))) / 2, rel=1e-12)


def test_ar6_fractions_partition_cells_and_place_known_points(fractions):
    ar6 = fractions.where(fractions["region_set"] == "ar6", drop=True)
    assert ar6.sizes["region"] == 47  # 46 land regions and the remainder
    np.testing.assert_allclose(ar6.sum("region"), 1.0, rtol=0, atol=1e-12)
    assert float(ar6.min()) >= 0.0 and float(ar6.max()) <= 1.0
    # the cells holding central Sahara, central India and West Africa lie in their regions
    for region, lat, lon in (("SAH", 23.0, 10.0), ("SAS", 22.0, 78.0), ("WAF", 10.0, 354.0)):
        assert float(ar6.sel(region=region).sel(lat=lat, lon=lon, method="nearest")) > 0.95
    # mid-Pacific: no land region at all
    assert float(ar6.sel(region="remainder").sel(lat=0.0, lon=200.0, method="nearest")) == 1.0


def test_regional_totals_and_remainder_add_up_to_the_global_total(grid, fractions):
    rng = np.random.default_rng(1)
    shape = (grid.sizes["lat"], grid.sizes["lon"])
    flux = xr.DataArray(rng.uniform(0, 900, shape), dims=("lat", "lon"))
    flux = flux.where(rng.uniform(size=shape) > 0.1)  # NaNs count as zero
    land = xr.DataArray(rng.uniform(0, 1, shape), dims=("lat", "lon"))
    area = grids.cell_area(grid)
    t = regions.regional_totals(flux, land, area, fractions)
    total = land_total(flux.values, land.values, area.values)
    assert t[-1] == pytest.approx(total, rel=1e-13)
    for rset in ("ar6", "band"):
        part = t[:-1][fractions["region_set"].values == rset].sum()
        assert part == pytest.approx(total, rel=1e-12), rset


def test_regional_metrics_weight_cells_by_their_share(grid, fractions):
    rng = np.random.default_rng(2)
    shape = (grid.sizes["lat"], grid.sizes["lon"])
    med = xr.DataArray(rng.uniform(50, 500, shape), dims=("lat", "lon"))
    med = med.where(rng.uniform(size=shape) > 0.3)
    model = med * 1.2 + xr.DataArray(rng.normal(0, 40, shape), dims=("lat", "lon"))
    mad = xr.DataArray(rng.uniform(10, 80, shape), dims=("lat", "lon"))
    table = regions.regional_metrics(model, med, mad, fractions).set_index("region")
    want = metrics(model, med, mad)
    got = table.loc["global"]
    assert got["n_cells"] == want["n_cells"] and got["n_within_mad"] == want["n_within_mad"]
    for k in ("rmse", "r2", "bias"):
        assert got[k] == pytest.approx(want[k], rel=1e-9), k
    # a region's weighted bias by hand; the fractional counts of a set add up to the globe
    f = fractions.sel(region="tropics").values
    ok = np.isfinite(model.values) & np.isfinite(med.values)
    e = (model.values - med.values)[ok]
    assert table.loc["tropics", "bias"] == pytest.approx(np.sum(f[ok] * e) / f[ok].sum())
    bands = table[table["region_set"] == "band"]
    assert bands["n_within_mad"].sum() == pytest.approx(want["n_within_mad"], rel=1e-12)
    assert bands["n_cells"].sum() == pytest.approx(want["n_cells"], rel=1e-12)
