"""The numbers hold on real data: nine CMIP5 models' real ``rh`` fields (ice sheets left
missing, ocean stored as zero, tiny negative fluxes, masked coasts) from
``../shared/data/real-fields``, written here as a small archive in the Pangeo layout (fx
derived as the virtual world derives them; two models without fx), run through the whole
pipeline with the virtual world's products and the real HWSD (SOC) and WFDEI (MAT)
covariates."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from rhcloud.config import Config
from rhcloud.core import grids
from rhcloud.core.landmask import land_fraction
from rhcloud.pipeline import run
from rhcloud.world.generate import month_axis, write_catalogs

pytestmark = pytest.mark.slow

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real-fields"
if not REAL.is_dir():
    pytest.skip("../shared/data/real-fields absent", allow_module_level=True)

MODELS = json.loads((REAL / "fields.json").read_text())
NO_FX = ("BNU-ESM", "GISS-E2-R")  # one without fx among each kind (masked coast, ice sheets)
ICE_SHEETS = ("IPSL-CM5A-LR", "GISS-E2-R")
SECONDS_PER_YEAR = 365 * 86400.0  # noleap
PERIOD = (1990, 1991)


def _grid(ds: xr.Dataset) -> xr.Dataset:
    return grids.normalize_grid(ds["lat"].values, ds["lon"].values, ds["lat_bnds"].values,
                                ds["lon_bnds"].values)


def derived_landfrac(grid: xr.Dataset, flux: np.ndarray) -> np.ndarray:
    """sftlf as the world derives it (the coastline on the model's grid), on the model's own
    land: 0 where the model has no data and the coastline gives less than half land."""
    lf = land_fraction(grid)
    return np.where(np.isnan(flux) & (lf < 0.5), 0.0, lf)


def _write(ds: xr.Dataset, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_zarr(path, zarr_format=2, consolidated=True, mode="w")


def build_archive(root: Path) -> dict[str, dict]:
    """The Pangeo-layout archive and catalogs; returns per model what was written."""
    rows, written = [], {}
    bnds, mid, _ = month_axis("noleap", *PERIOD)
    for sid in MODELS:
        src = xr.open_dataset(REAL / f"{sid}_rh.nc")
        grid = _grid(src)
        kg_yr = np.asarray(src["rh"].values, dtype=np.float64)  # kg m-2 yr-1
        base = {"activity_id": "CMIP", "institution_id": src.attrs.get("institution_id", "X"),
                "source_id": sid, "grid_label": "gn", "dcpp_init_year": np.nan,
                "experiment_id": "historical", "member_id": "r1i1p1", "version": "20120101"}
        coords = {"lat": grid["lat"], "lon": grid["lon"]}
        monthly = np.repeat((kg_yr / SECONDS_PER_YEAR)[None].astype(np.float32), 24, axis=0)
        ds = xr.Dataset(
            {"rh": (("time", "lat", "lon"), monthly,
                    {"units": "kg m-2 s-1", "standard_name":
                     "heterotrophic_respiration_carbon_flux"}),
             "time_bnds": (("time", "bnds"), bnds),
             "lat_bnds": grid["lat_bnds"], "lon_bnds": grid["lon_bnds"]},
            coords={"time": ("time", mid, {"units": "days since 1850-01-01",
                                           "calendar": "noleap", "bounds": "time_bnds"}),
                    **coords})
        ds["rh"].encoding = {"_FillValue": np.float32(1e20)}
        rel = f"CMIP6/CMIP/X/{sid}/historical/r1i1p1/Lmon/rh/gn/v20120101"
        _write(ds, root / "cmip6" / rel)
        rows.append({**base, "table_id": "Lmon", "variable_id": "rh", "rel": rel})
        g_m2_yr = kg_yr * 1000.0
        lf = derived_landfrac(grid, kg_yr)
        if sid not in NO_FX:
            for var, values, units in (("sftlf", lf * 100.0, "%"),
                                       ("areacella", grids.cell_area(grid).values, "m2")):
                fx = xr.Dataset({var: (("lat", "lon"), values.astype(np.float32),
                                       {"units": units}),
                                 "lat_bnds": grid["lat_bnds"], "lon_bnds": grid["lon_bnds"]},
                                coords=coords)
                frel = f"CMIP6/CMIP/X/{sid}/historical/r0i0p0/fx/{var}/gn/v20120101"
                _write(fx, root / "cmip6" / frel)
                rows.append({**base, "member_id": "r0i0p0", "table_id": "fx",
                             "variable_id": var, "rel": frel})
            lf = np.asarray(lf * 100.0, dtype=np.float32).astype(np.float64) / 100.0
        written[sid] = {"flux": g_m2_yr, "landfrac": lf, "grid": grid}
    write_catalogs(root, rows)
    return written


@pytest.fixture(scope="module")
def real_run(tmp_path_factory, small_world):
    root = tmp_path_factory.mktemp("real-archive")
    written = build_archive(root)
    world = json.loads(json.dumps(__import__("yaml").safe_load(
        (small_world / "run.yaml").read_text())))
    config = Config(
        catalog=str(root / "local-cmip6.json"), models="all", variables=["rh"],
        period=PERIOD, reference_grid="BCC-ESM1", products=world["products"],
        covariates={"SOC": {"reader": "hwsd", "path": str(REAL / "HWSD_soilc_0.5x0.5.nc")},
                    "MAT": {"reader": "gswp3", "variable": "tas", "units": "degC",
                            "path": str(REAL / "WFDEI_tas_0.5x0.5.nc")}},
        drivers={"residuals": []}, cluster={"kind": "local", "n_workers": 1},
        output=str(root / "out"), cache=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = run(config)
    return result, written, root / "out"


def test_no_field_excluded_and_ice_sheets_reported(real_run):
    result, _, out = real_run
    assert [e.row() for e in result.exclusions] == []
    assert pd.read_csv(out / "tables" / "excluded.csv").empty
    prov = json.loads((out / "provenance.json").read_text())
    share = {d["source_id"]: d["ice_sheet_missing_share"] for d in prov["datasets"]}
    assert set(share) == set(MODELS)
    for sid in ICE_SHEETS:
        assert share[sid] > 0.08, sid  # ~9 % of the land area: more than the 5 % rule
    for sid in set(MODELS) - set(ICE_SHEETS):
        assert share[sid] < 0.01, sid
    cons = pd.read_csv(out / "tables" / "regrid_conservation.csv")
    rows = cons[cons["name"].isin(list(ICE_SHEETS))]
    assert (rows["ice_sheet_missing_share"] > 0.08).all()


def test_every_total_is_a_numpy_integration_of_the_written_field(real_run):
    result, written, out = real_run
    totals = pd.read_csv(out / "tables" / "global_totals.csv")
    models = totals[(totals["kind"] == "model") & (totals["member_id"] != "ensemble")]
    assert set(models["name"]) == set(MODELS)
    for _, row in models.iterrows():
        w = written[row["name"]]
        area = grids.cell_area(w["grid"]).values
        want = np.nansum(w["flux"] * area * w["landfrac"]) / 1e15
        assert row["total_PgC_yr"] == pytest.approx(want, rel=1e-6), row["name"]
        assert row["landfrac_source"] == ("sftlf" if row["name"] not in NO_FX
                                          else "coastline (global-land-mask, 6x6 samples "
                                               "per cell)")


def test_conservation_holds_and_negatives_are_kept(real_run):
    result, _, out = real_run
    cons = pd.read_csv(out / "tables" / "regrid_conservation.csv")
    models = cons[cons["name"].isin(list(MODELS))]
    assert len(models) == len(MODELS)
    assert models["rel_error"].abs().max() < 1e-6
    notes = {d["source_id"]: d["notes"] for d in result.collected.datasets}
    assert "negative flux" in notes["HadGEM2-ES"]


def test_hwsd_is_soc_and_wfdei_is_mat(real_run):
    result, _, _ = real_run
    res = result.results
    soc, mat = res["cov_SOC"].values, res["cov_MAT"].values
    assert res["cov_SOC"].attrs["units"] == "g m-2"
    assert 0.0 <= np.nanmin(soc) and np.nanmax(soc) < 1e5  # g C m-2: no fill value left
    assert -60.0 < np.nanmin(mat) and np.nanmax(mat) < 35.0  # °C
    land = res["reference_landfrac"].values >= 0.5
    assert np.isfinite(mat[land]).mean() > 0.8
    assert np.isfinite(soc[land]).mean() > 0.7


def test_table1_over_mostly_land_cells(real_run):
    result, _, _ = real_run
    table = result.tables["model_metrics"]
    lf = result.results["reference_landfrac"].values
    rows = table[table["member_id"] != "ensemble"]
    assert len(rows) == len(MODELS)
    assert (rows["n_cells"] <= int((lf >= 0.5).sum())).all()
    assert rows["r2"].between(0.0, 1.0).all()
