"""Observation products and covariates: the world's stand-ins read from their own formats,
convert units, regrid to the reference grid conserving land totals, and bad inputs fail
clearly. One small observation set is generated per module (scale="test")."""

from __future__ import annotations

import dask
import fsspec
import numpy as np
import pytest
import rasterio
import xarray as xr
from dask.callbacks import Callback

from rhcloud.core.conservative import land_total, regrid_majority
from rhcloud.core.grids import cell_area, model_grid
from rhcloud.products import (
    READERS,
    ProductError,
    field_name,
    grid_of,
    native_total,
    read_entry,
)
from rhcloud.products.io import gdal_env, gdal_path
from rhcloud.products.units import (
    parse_flux_units,
    precipitation_factor,
    soc_factor,
    temperature_offset,
)
from rhcloud.stages.regrid import to_reference
from rhcloud.world import planted
from rhcloud.world.observations import konings_departure, write_observations

REL_TOL = 1e-6


@pytest.fixture(scope="module")
def obs(tmp_path_factory):
    return write_observations(tmp_path_factory.mktemp("obs"), seed=3, scale="test")


@pytest.fixture(scope="module")
def ref_grid():
    return model_grid("CNRM-ESM2-1")


def _entries(obs) -> dict[str, dict]:
    out = {e["name"]: e for e in obs["products"]}
    out["gimms"] = obs["npp_reference"]
    out.update({k: {**v, "name": k} for k, v in obs["covariates"].items()})
    return out


ALL = ["warner2019", "hashimoto2015", "konings2019", "gimms", "MAT", "MAP", "SOC", "lithology"]


@pytest.fixture(scope="module")
def read_all(obs, ref_grid):
    """Every entry read (computed) and put on the reference grid, once."""
    out = {}
    for name, entry in _entries(obs).items():
        ds = read_entry(entry).compute()
        regridded, row = to_reference(ds, ref_grid)
        out[name] = (ds, regridded.compute(), row)
    return out


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


# --------------------------------------------------------------------------------------
# every product and covariate: layout, totals, conservation
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ALL)
def test_reads_on_own_grid_with_common_layout(read_all, name):
    ds, _, _ = read_all[name]
    lat, lon = ds["lat"].values, ds["lon"].values
    assert np.all(np.diff(lat) > 0)
    assert lon.min() >= 0.0 and lon.max() < 360.0 and np.all(np.diff(lon) > 0)
    assert ds["lat_bnds"].shape == (lat.size, 2) and ds["lon_bnds"].shape == (lon.size, 2)
    lf = ds["landfrac"].values
    assert np.nanmin(lf) >= 0.0 and np.nanmax(lf) <= 1.0 and lf.sum() > 0
    var = field_name(ds)
    assert ds.attrs["name"] == name and ds.attrs["citation"] and ds.attrs["path"]
    assert ds[var].attrs["units"] == ds.attrs["units"] or var == "classes"
    # valid data exactly where the product has land
    assert np.array_equal(np.isfinite(ds[var].values), lf > 0)


@pytest.mark.parametrize("name", ["warner2019", "hashimoto2015", "konings2019", "gimms"])
def test_flux_totals_match_truth_and_are_conserved(obs, read_all, ref_grid, name):
    ds, regridded, row = read_all[name]
    truth = (obs["truth"]["npp_reference"] if name == "gimms"
             else obs["truth"]["products"][name])["total_PgC_yr"]
    native = native_total(ds)
    after = land_total(regridded["flux"], regridded["landfrac"], cell_area(ref_grid))
    assert _rel(native, truth) <= REL_TOL
    assert _rel(after, truth) <= REL_TOL
    assert regridded["flux"].shape == (128, 256)
    assert row["name"] == name and abs(row["rel_error"]) <= REL_TOL
    assert 30.0 < truth < 70.0  # plausible global Rh / NPP, Pg C yr-1


@pytest.mark.parametrize("name", ["MAT", "MAP", "SOC"])
def test_covariates_regrid_conserving_their_land_integral(read_all, ref_grid, name):
    ds, regridded, row = read_all[name]
    assert name in regridded.attrs.get("name", name)
    var = field_name(ds)
    before = native_total(ds)
    after = land_total(regridded[var], regridded["landfrac"], cell_area(ref_grid))
    assert _rel(after, before) <= REL_TOL
    assert row["total_native_PgC_yr"] == pytest.approx(before, rel=1e-12)
    assert abs(row["rel_error"]) <= REL_TOL
    assert regridded[var].attrs["units"] == ds[var].attrs["units"]


def test_lithology_majority_only_produces_input_classes(obs, read_all, ref_grid):
    ds, regridded, row = read_all["lithology"]
    assert row is None
    src = set(np.unique(ds["classes"].values[np.isfinite(ds["classes"].values)]))
    assert src == {float(c) for c in obs["truth"]["covariates"]["lithology"]["present"]}
    out = regridded["classes"].values
    dst = set(np.unique(out[np.isfinite(out)]))
    assert dst and dst <= src
    # a much coarser target: still only input classes (majority, never a mean)
    coarse = model_grid("BCC-ESM1")
    out2 = regrid_majority(ds["classes"], grid_of(ds), coarse).values
    assert set(np.unique(out2[np.isfinite(out2)])) <= src
    assert ds.attrs["classes"][1].startswith("su")


def test_products_differ_by_region_as_planted(read_all):
    """Konings is higher than Hashimoto in the tropics and lower in western North America
    and central Asia, on the common grid (the planted regional disagreement)."""
    k = read_all["konings2019"][1]["flux"]
    h = read_all["hashimoto2015"][1]["flux"]
    ratio = (k / h)
    tropics = float(ratio.sel(lat=slice(-10, 10)).median())
    wna = float(ratio.sel(lat=slice(35, 45), lon=slice(235, 255)).median())
    casia = float(ratio.sel(lat=slice(38, 48), lon=slice(60, 80)).median())
    assert tropics > 1.1 and wna < 0.85 and casia < 0.85
    assert konings_departure(0.0, 20.0) > 1.15 and konings_departure(40.0, 245.0) < 0.7


# --------------------------------------------------------------------------------------
# Warner: chunked, block-averaged on the workers
# --------------------------------------------------------------------------------------

class _MaxResult(Callback):
    """Largest array any task produced, and the number of tasks run."""

    def __init__(self):
        super().__init__()
        self.max_nbytes = 0
        self.n_tasks = 0

    def _posttask(self, key, result, dsk, state, worker_id):
        self.n_tasks += 1
        self.max_nbytes = max(self.max_nbytes, int(getattr(result, "nbytes", 0)))


def test_warner_reads_lazily_in_chunks_and_block_averages_before_compute(obs):
    entry = {**obs["products"][0], "chunk_pixels": 256}
    ds = read_entry(entry)
    flux = ds["flux"].data
    assert isinstance(flux, dask.array.Array)  # nothing computed yet
    assert flux.shape == (360, 720)  # already block-averaged (0.125 deg -> 0.5 deg) lazily
    assert ds.attrs["block_factor"] == 4
    graph = flux.__dask_graph__()
    layers = list(graph.layers)
    # xarray's coarsen is a per-chunk reshape + sum in the graph, before any merge
    assert any(name.startswith("reshape") for name in layers)
    assert any(name.startswith("sum") for name in layers)
    assert flux.npartitions > 1  # the 0.5 deg result is still chunked: reduced per chunk
    reads = [graph.layers[name] for name in layers if name.startswith("open_rasterio")]
    n_read_chunks = sum(len(layer) for layer in reads)
    assert n_read_chunks >= 2 * 30  # two maps, each in >= 30 chunks (1440 x 2880 px / 256)
    fine_nbytes = 1440 * 2880 * 8
    with _MaxResult() as cb, dask.config.set(scheduler="synchronous"):
        values = ds["flux"].values
    # no task ever held the fine raster: nothing larger than the 0.5 deg result, 16 times
    # smaller, was ever produced (the read chunks are 256 x 256 pixels)
    assert cb.n_tasks > 2 * 30
    assert cb.max_nbytes <= values.nbytes <= fine_nbytes / 16
    # the block average equals an independent area-weighted mean of the full files
    maps = []
    for p in entry["path"]:
        with rasterio.open(p) as src:
            a = src.read(1, masked=True).astype(np.float64).filled(np.nan)
            maps.append(a)
    mean = np.nanmean(np.stack(maps), axis=0)
    lat_e = 90.0 - 0.125 * np.arange(1441)
    w = np.abs(np.diff(np.sin(np.radians(lat_e))))[:, None] * np.ones((1, 2880))
    valid = np.isfinite(mean)
    num = np.where(valid, mean * w, 0).reshape(360, 4, 720, 4).sum(axis=(1, 3))
    den = np.where(valid, w, 0).reshape(360, 4, 720, 4).sum(axis=(1, 3))
    expect = np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)[::-1]  # north-up
    expect = np.roll(expect, -360, axis=1)  # -180..180 -> 0..360
    np.testing.assert_allclose(values, expect, rtol=1e-12, equal_nan=True)


@pytest.mark.parametrize("name", ALL)
def test_no_grid_sized_array_travels_inside_a_readers_graph(obs, name):
    """The readers' lazy outputs are persisted on the cluster: an in-memory array as large
    as the grid inside their graph (the coastline land fraction computed on the client, a
    block-area outer product) would be sent with it (the paper-size run sent 14.3 MiB,
    and distributed warned). The coastline lookup is a task of its own, the block areas a
    lazy product of two 1-D arrays."""
    import cloudpickle

    ds = read_entry(_entries(obs)[name])
    graph = dict(ds.__dask_graph__())
    cells = ds.sizes["lat"] * ds.sizes["lon"]

    def arrays(v):
        if isinstance(v, np.ndarray):
            yield v
        elif isinstance(v, (tuple, list)):
            for x in v:
                yield from arrays(x)
        elif hasattr(v, "args"):  # a dask Task: its arguments
            yield from arrays(tuple(getattr(v, "args", ())))
            yield from arrays(tuple(getattr(v, "kwargs", {}).values()))
        elif hasattr(v, "value"):  # a DataNode
            yield from arrays((v.value,))

    big = [a.shape for v in graph.values() for a in arrays(v) if a.size >= cells]
    assert big == []
    assert len(cloudpickle.dumps(graph)) < 2**20


# --------------------------------------------------------------------------------------
# units: hand-computed values
# --------------------------------------------------------------------------------------

def test_unit_parsers_against_hand_values():
    fu = parse_flux_units("kg m-2 s-1")
    assert fu.per == "s" and fu.factor == pytest.approx(1000.0)
    fu = parse_flux_units("g C m-2 day-1")
    assert fu.per == "s" and fu.factor == pytest.approx(1.0 / 86400.0)
    fu = parse_flux_units("gC/m2/month")
    assert fu.per == "month" and fu.factor == pytest.approx(1.0)
    fu = parse_flux_units("kg C m-2 yr-1")
    assert fu.per == "yr" and fu.factor == pytest.approx(1000.0)
    assert 300.0 + temperature_offset("K") == pytest.approx(26.85)
    factor, per = precipitation_factor("kg m-2 s-1")
    assert factor * 86400 * 365 == 31_536_000 and per == "s"  # 1 kg m-2 s-1 = 31.5e6 mm/yr
    assert soc_factor("t ha-1") == 100.0  # 1 t/ha = 1e6 g / 1e4 m2
    assert soc_factor("kg m-2") == 1000.0


def _cell(ds: xr.Dataset, var: str) -> tuple[float, float]:
    """A land cell (lat, lon) of the reader output near 50N 10E."""
    v = ds[var].sel(lat=slice(45, 55), lon=slice(5, 15))
    i, j = np.argwhere(np.isfinite(v.values))[0]
    return float(v.lat[i]), float(v.lon[j])


def _raw(path: str, var: str) -> xr.DataArray:
    with xr.open_dataset(path, decode_times=False) as f:
        return f[var].load()


def _lon180(lon: float) -> float:
    return (lon + 180.0) % 360.0 - 180.0


def test_hashimoto_monthly_totals_to_annual_by_hand(obs, read_all):
    ds = read_all["hashimoto2015"][0]
    la, lo = _cell(ds, "flux")
    raw = _raw(obs["products"][1]["path"], "rh").sel(lat=la, lon=_lon180(lo))
    assert raw.attrs["units"] == "gC/m2/month" and raw.sizes["time"] == 12
    hand = float(np.sum(raw.values.astype(np.float64)))  # 12 monthly totals of one year
    assert float(ds["flux"].sel(lat=la, lon=lo)) == pytest.approx(hand, rel=1e-12)


def test_konings_daily_rates_to_annual_by_hand(obs, read_all):
    ds = read_all["konings2019"][0]
    v = ds["flux"].sel(lat=slice(-10, 10))
    i, j = np.argwhere(np.isfinite(v.values))[0]
    la, lo = float(v.lat[i]), float(v.lon[j])
    with xr.open_dataset(obs["products"][2]["path"], decode_times=False) as f:
        raw = f["rh"].sel(lat=la, lon=lo).values.astype(np.float64)
        days = np.diff(f["time_bnds"].values, axis=1)[:, 0]
    assert raw.size == 36 and days.sum() == 3 * 365 + 1  # 2010-2012, 2012 a leap year
    # length-weighted mean daily rate x the data's mean year length (1096 / 3 days)
    hand = float(np.sum(raw * days) / days.sum() * (days.sum() / 3.0))
    assert float(ds["flux"].sel(lat=la, lon=lo)) == pytest.approx(hand, rel=1e-12)


def test_gswp3_mat_map_by_hand_and_equal_planted(obs, read_all):
    mat, mapp = read_all["MAT"][0], read_all["MAP"][0]
    la, lo = _cell(mat, "value")
    tas = _raw(obs["covariates"]["MAT"]["path"], "tas").sel(lat=la, lon=_lon180(lo))
    pr = _raw(obs["covariates"]["MAP"]["path"], "pr").sel(lat=la, lon=_lon180(lo))
    days = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], float)  # 2010
    hand_t = float(np.sum(tas.values * days) / 365.0) - 273.15
    hand_p = float(np.sum(pr.values.astype(np.float64) * days * 86400.0))  # kg m-2 = mm
    assert float(mat["value"].sel(lat=la, lon=lo)) == pytest.approx(hand_t, abs=1e-9)
    assert float(mapp["value"].sel(lat=la, lon=lo)) == pytest.approx(hand_p, rel=1e-12)
    # and the planted truth is recovered everywhere (float32 storage is the limit)
    lat2, lon2 = np.meshgrid(mat.lat, mat.lon, indexing="ij")
    land = np.isfinite(mat["value"].values)
    assert np.nanmax(np.abs(mat["value"].values - planted.mat(lat2, lon2))[land]) < 1e-3
    rel = np.abs(mapp["value"].values / planted.map_(lat2, lon2) - 1.0)[land]
    assert np.nanmax(rel) < 1e-5
    assert mat.attrs["units"] == "degC" and mapp.attrs["units"] == "mm yr-1"


def test_soilgrids_t_ha_to_g_m2_by_hand(obs, read_all):
    ds = read_all["SOC"][0]
    assert ds.attrs["block_factor"] == 2  # 0.25 deg pixels into 0.5 deg blocks
    la, lo = _cell(ds, "value")
    with rasterio.open(obs["covariates"]["SOC"]["path"]) as src:
        row = int((90.0 - (la + 0.25)) / 0.25)
        col = int((_lon180(lo) - 0.25 + 180.0) / 0.25)
        block = src.read(1, window=((row, row + 2), (col, col + 2)), masked=True)
    lat_e = 90.0 - 0.25 * np.arange(row, row + 3)
    w = np.abs(np.diff(np.sin(np.radians(lat_e))))[:, None] * np.ones((1, 2))
    b = block.astype(np.float64).filled(np.nan)
    ok = np.isfinite(b)
    hand = np.sum(np.where(ok, b * w, 0)) / np.sum(np.where(ok, w, 0)) * 100.0
    assert float(ds["value"].sel(lat=la, lon=lo)) == pytest.approx(hand, rel=1e-12)
    assert ds.attrs["units"] == "g m-2" and ds.attrs["source_units"] == "t ha-1"


def test_gimms_kg_to_g_by_hand(obs, read_all):
    ds = read_all["gimms"][0]
    la, lo = _cell(ds, "flux")
    raw = _raw(obs["npp_reference"]["path"], "npp").sel(lat=la, lon=_lon180(lo))
    assert raw.attrs["units"] == "kg C m-2 yr-1"
    hand = float(np.mean(raw.values.astype(np.float64))) * 1000.0  # 2010, 2011: 365 d each
    assert float(ds["flux"].sel(lat=la, lon=lo)) == pytest.approx(hand, rel=1e-12)


# --------------------------------------------------------------------------------------
# paths through fsspec
# --------------------------------------------------------------------------------------

def _konings_through_memory_url(obs, read_all, folder: str) -> None:
    """Konings' NetCDF read from an fsspec ``memory://`` URL equals the local read."""
    mem = fsspec.filesystem("memory")
    entry = obs["products"][2]
    with open(entry["path"], "rb") as f:
        mem.pipe(f"/{folder}/konings.nc", f.read())
    try:
        ds = read_entry({**entry, "path": f"memory://{folder}/konings.nc"})
        np.testing.assert_array_equal(ds["flux"].values, read_all["konings2019"][0]["flux"])
    finally:
        mem.rm(f"/{folder}", recursive=True)


def test_netcdf_through_fsspec_url_and_geotiff_urls_to_gdal(obs, read_all):
    _konings_through_memory_url(obs, read_all, "rhcloud-test")
    assert gdal_path("gs://bucket/warner/rh.tif") == "/vsigs/bucket/warner/rh.tif"
    assert gdal_path("s3://b/k.tif") == "/vsis3/b/k.tif"
    assert gdal_path("https://host/x.tif") == "/vsicurl/https://host/x.tif"
    assert gdal_env({"token": "anon"}) == {"GS_NO_SIGN_REQUEST": "YES"}
    soc = obs["covariates"]["SOC"]
    ds = read_entry({**soc, "name": "SOC", "path": "file://" + soc["path"]})
    np.testing.assert_array_equal(ds["value"].values, read_all["SOC"][0]["value"])
    with pytest.raises(ProductError, match="memory filesystem"):
        read_entry({**soc, "path": "memory://x/soc.tif"})


def test_netcdf_url_when_h5py_cannot_read_dimension_scales(obs, read_all, monkeypatch):
    """With two HDF5 libraries loaded (pip wheels of h5py 3.15 and netCDF4 1.7.3, as in the
    Pangeo image's versions installed by pip) h5netcdf fails on every file; netCDF4 reads
    the same bytes from memory and the product is the same."""
    real_open = xr.open_dataset

    def h5netcdf_broken(obj, *args, engine=None, **kwargs):
        if engine == "h5netcdf":
            raise RuntimeError("Unspecified error in H5DSget_num_scales (return value <0)")
        return real_open(obj, *args, engine=engine, **kwargs)

    monkeypatch.setattr(xr, "open_dataset", h5netcdf_broken)
    _konings_through_memory_url(obs, read_all, "rhcloud-h5ds")


# --------------------------------------------------------------------------------------
# bad inputs: clear errors naming the file
# --------------------------------------------------------------------------------------

def _edit_netcdf(src: str, dst, var: str, **attrs) -> str:
    with xr.open_dataset(src, decode_times=False) as f:
        ds = f.load()
    ds[var].encoding.pop("missing_value", None)  # the second fill value is already decoded
    ds[var].attrs.update(attrs)
    ds.to_netcdf(dst)
    return str(dst)


def test_wrong_units_attribute_names_file(obs, tmp_path):
    entry = obs["products"][1]
    bad = _edit_netcdf(entry["path"], tmp_path / "bad_units.nc", "rh", units="kg m-2")
    with pytest.raises(ProductError, match=r"bad_units\.nc.*'kg m-2'.*carbon mass flux"):
        read_entry({**entry, "path": bad})
    # the entry says one thing, the file another
    with pytest.raises(ProductError, match=r"hashimoto2015_rh_monthly\.nc.*expected "
                                           r"'kg m-2 s-1'"):
        read_entry({**entry, "units": "kg m-2 s-1"})
    tas = obs["covariates"]["MAT"]
    bad = _edit_netcdf(tas["path"], tmp_path / "tas_degF.nc", "tas", units="degF")
    with pytest.raises(ProductError, match=r"tas_degF\.nc.*'degF'.*expected 'K'"):
        read_entry({**tas, "path": bad})


def test_wrong_variable_name_names_file(obs):
    entry = obs["products"][1]
    with pytest.raises(ProductError, match=r"hashimoto2015_rh_monthly\.nc: variable 'RH' "
                                           r"not found.*\['lat_bnds', 'lon_bnds', 'rh'"):
        read_entry({**entry, "variable": "RH"})
    with pytest.raises(ProductError, match=r"gswp3.*variable 'tas' \(MAT\) or 'pr'"):
        read_entry({**obs["covariates"]["MAT"], "variable": "tair"})


def test_soilgrids_content_instead_of_stock_is_refused(obs):
    entry = {**obs["covariates"]["SOC"], "units": "g/kg"}
    with pytest.raises(ProductError, match="soilgrids_ocs.*'t ha-1', expected 'g/kg'"):
        read_entry(entry)
    with pytest.raises(ProductError, match="content"):
        soc_factor("g/kg", where="x.tif")


def _write_3857(path, tmp_units="g C m-2 yr-1") -> None:
    from rasterio.transform import from_origin

    data = np.full((40, 80), 300.0, dtype=np.float32)
    data[:5] = -9999.0
    profile = {"driver": "GTiff", "height": 40, "width": 80, "count": 1, "dtype": "float32",
               "crs": "EPSG:3857", "nodata": -9999.0,
               "transform": from_origin(-2_000_000.0, 1_000_000.0, 50_000.0, 50_000.0)}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
        dst.update_tags(units=tmp_units)


def test_non_4326_crs_refused_or_reprojected(tmp_path):
    path = tmp_path / "mercator.tif"
    _write_3857(path)
    entry = {"name": "mine", "reader": "geotiff", "path": str(path), "units": "g C m-2 yr-1"}
    with pytest.raises(ProductError, match=r"mercator\.tif: GeoTIFF CRS is 'EPSG:3857', "
                                           r"expected EPSG:4326"):
        read_entry(entry)
    ds = read_entry({**entry, "reproject": True}).compute()
    assert ds.attrs["kind"] == "flux"
    assert ds["lat"].min() > -10 and ds["lat"].max() < 10  # ±1000 km around the origin
    vals = ds["flux"].values[np.isfinite(ds["flux"].values)]
    assert vals.size and np.allclose(vals, 300.0)


def test_unknown_reader_and_missing_file(obs, tmp_path):
    with pytest.raises(ProductError, match="unknown reader 'cdo'.*'warner'"):
        read_entry({"name": "x", "reader": "cdo", "path": "x.nc"})
    with pytest.raises(ProductError, match=r"nope\.nc: file not found"):
        read_entry({"name": "x", "reader": "hashimoto", "path": str(tmp_path / "nope.nc")})
    with pytest.raises(ProductError, match="two Rh maps"):
        read_entry({"name": "w", "reader": "warner", "path": obs["products"][0]["path"][:1]})
    assert set(READERS) >= {"warner", "hashimoto", "konings", "gswp3", "soilgrids", "gimms",
                            "glim", "netcdf", "geotiff"}


def test_generic_netcdf_reader_with_user_units(obs, tmp_path):
    """A user file with no units attribute: the entry's units are used and converted."""
    src = obs["products"][2]["path"]
    with xr.open_dataset(src, decode_times=False) as f:
        ds = f.load()
    del ds["rh"].attrs["units"]
    ds["rh"] = ds["rh"] / 1000.0 / 86400.0  # g C m-2 day-1 -> kg m-2 s-1
    path = tmp_path / "mine.nc"
    ds.to_netcdf(path)
    out = read_entry({"name": "mine", "reader": "netcdf", "path": str(path), "variable": "rh",
                      "units": "kg m-2 s-1"}).compute()
    ref = read_entry(obs["products"][2]).compute()
    np.testing.assert_allclose(out["flux"].values, ref["flux"].values, rtol=1e-6)
    with pytest.raises(ProductError, match="no units attribute and the entry gives none"):
        read_entry({"name": "mine", "reader": "netcdf", "path": str(path), "variable": "rh"})


def test_generated_files_are_in_published_formats(obs):
    w = obs["products"][0]["path"]
    assert len(w) == 2 and all(p.endswith(".tif") for p in w)
    with rasterio.open(w[0]) as src:
        assert src.crs.to_epsg() == 4326 and src.profile["tiled"]
        assert src.profile["compress"] == "deflate" and abs(src.res[0] - 0.125) < 1e-12
    with xr.open_dataset(obs["products"][1]["path"], decode_times=False) as f:
        assert f["time"].attrs["units"].startswith("days since 1965-01-01")
        assert "time_bnds" in f and f.sizes["lat"] == 360 and f.sizes["lon"] == 720
    with xr.open_dataset(obs["products"][2]["path"]) as f:
        assert f.sizes == {"time": 36, "lat": 45, "lon": 72, "bnds": 2}
        assert f.time.dt.year.values.min() == 2010 and f.time.dt.year.values.max() == 2012
