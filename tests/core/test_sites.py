"""Site-level check against SRDB: the shipped records and sampling by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from rhcloud.core import grids, sites
from rhcloud.core.metrics import member_mean


def test_shipped_srdb_records():
    df = sites.load_srdb()
    assert len(df) == 903
    assert df["Rh_annual"].notna().all() and df["Latitude"].between(-90, 90).all()


def test_cell_index_by_hand():
    b = np.array([[0.0, 10.0], [10.0, 20.0], [20.0, 30.0]])
    assert sites.cell_index(b, np.array([5.0, 10.0, 29.9, 31.0])).tolist() == [0, 1, 2, -1]
    lon = np.array([[-5.0, 5.0], [5.0, 15.0]])
    assert sites.cell_index(lon, np.array([355.0, 6.0]), periodic=True).tolist() == [0, 1]


def test_site_metrics_by_hand():
    g = grids.regular_grid(18, 36)  # 10° cells
    field = np.full((2, 18, 36), np.nan)
    field[0, 13, 1] = 500.0  # cell 40–50°N, 10–20°E
    field[1, 13, 1] = 300.0
    field[0, 4, 35] = 100.0  # cell 50–40°S, 350–360°E
    results = xr.Dataset(
        {"rh": (("dataset", "lat", "lon"), field), "lat_bnds": g.lat_bnds,
         "lon_bnds": g.lon_bnds},
        coords={"lat": g.lat, "lon": g.lon, "source_id": ("dataset", ["A", "A"]),
                "member_id": ("dataset", ["r1", "r2"])})
    results["rh_member_mean"] = member_mean(results["rh"])  # the ensemble stage's
    srdb = pd.DataFrame({"Latitude": [45.0, -45.0, 0.0], "Longitude": [15.0, -5.0, 0.0],
                         "Rh_annual": [400.0, 200.0, 1.0]})
    m = sites.site_metrics(results, srdb).set_index("member_id")
    assert m.loc["r1", "n_sites"] == 2
    assert m.loc["r1", "rmse"] == pytest.approx(np.sqrt((100**2 + 100**2) / 2))
    assert m.loc["r1", "bias"] == pytest.approx(0.0)
    assert m.loc["r2", "n_sites"] == 1 and m.loc["r2", "bias"] == pytest.approx(-100.0)
    # member mean: (500+300)/2 = 400 at site 1 (error 0), 100 at site 2 (error -100)
    assert m.loc["ensemble", "n_sites"] == 2 and m.loc["ensemble", "bias"] == pytest.approx(-50)
