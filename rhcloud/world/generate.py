"""Write the virtual CMIP6 world: Zarr v2 stores in the Pangeo layout, its intake-esm
catalogs (``gs://`` and ``file://``), and ``truth.json``.

The monthly fields are built so that their time-weighted 1990–2010 mean is exactly the
planted climatology: a linear trend around the length-weighted mean year of the truth
period and a seasonal cycle with zero length-weighted mean in every year. The truth total of
a dataset is then Σ clim × areacella × sftlf/100 in float64 from the stored fx values.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import cftime
import numpy as np
import pandas as pd
import xarray as xr
import yaml

from rhcloud.core import grids
from rhcloud.core.landmask import ice_sheet_fraction, land_fraction
from rhcloud.world import planted
from rhcloud.world.observations import write_observations
from rhcloud.world.spec import MODEL_SPECS, OLD_VERSION, PAPER_MODELS, VERSION, ModelSpec

TRUTH_PERIOD = (1990, 2010)
TIME_UNITS = "days since 1850-01-01"
FILL = np.float32(1e20)
PG_PER_G = 1e-15
BUCKET = "cmip6"
GENERATOR_VERSION = 11  # bump when the planted truth or layout changes: stale worlds regenerate
OLD_VERSION_FACTOR = 1.08  # the superseded version carries a bug that the newer one fixed
TINY_NEGATIVE_G_M2_YR = -0.075  # -7.5e-5 kg m-2 yr-1, as HadGEM2-ES stores over deserts
MISSING_VALUE = np.float32(-1e20)  # the fill of a store that declares only missing_value

VARIABLE_ATTRS = {
    "rh": {
        "standard_name": "heterotrophic_respiration_carbon_flux",
        "long_name": "Total Heterotrophic Respiration on Land as Carbon Mass Flux",
        "units": "kg m-2 s-1",
        "cell_methods": "area: mean where land time: mean",
        "cell_measures": "area: areacella",
    },
    "npp": {
        "standard_name": "net_primary_productivity_of_biomass_expressed_as_carbon",
        "long_name": "Net Primary Production on Land as Carbon Mass Flux",
        "units": "kg m-2 s-1",
        "cell_methods": "area: mean where land time: mean",
        "cell_measures": "area: areacella",
    },
}

CATALOG_COLUMNS = [
    "activity_id", "institution_id", "source_id", "experiment_id", "member_id", "table_id",
    "variable_id", "grid_label", "zstore", "dcpp_init_year", "version",
]


@dataclass(frozen=True)
class WorldParams:
    """Everything that determines a world; a world on disk is reused only if they match."""

    seed: int = 0
    years: tuple[int, int] = (1987, 2014)
    models: tuple[str, ...] = PAPER_MODELS
    variables: tuple[str, ...] = ("rh", "npp")
    n_members: int | None = None  # None: each model's own member list; N: r1..rN for all
    time_chunk: int = 120
    truth_period: tuple[int, int] = TRUTH_PERIOD  # the period whose totals truth.json holds
    observations: str | None = "demo"  # scale of the observation stand-ins; None: none


def month_axis(calendar: str, y0: int, y1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Month bounds and mid-month times (days since 1850-01-01) for years y0..y1, and the
    month lengths (days), in ``calendar``."""
    starts = [cftime.datetime(y, m, 1, calendar=calendar)
              for y in range(y0, y1 + 1) for m in range(1, 13)]
    starts.append(cftime.datetime(y1 + 1, 1, 1, calendar=calendar))
    edges = cftime.date2num(starts, TIME_UNITS, calendar=calendar).astype(float)
    bnds = np.stack([edges[:-1], edges[1:]], axis=1)
    return bnds, bnds.mean(axis=1), np.diff(edges)


def year_lengths(calendar: str, y0: int, y1: int) -> np.ndarray:
    """Days in each year y0..y1 of ``calendar``."""
    _, _, ml = month_axis(calendar, y0, y1)
    return ml.reshape(-1, 12).sum(axis=1)


def seconds_per_year(calendar: str, period: tuple[int, int]) -> float:
    """The calendar's mean year length over ``period`` (s): the definition the pipeline uses."""
    yl = year_lengths(calendar, *period)
    return float(yl.sum() / yl.size * 86400.0)


def monthly_factors(calendar: str, years: tuple[int, int], lat: np.ndarray,
                    truth_period: tuple[int, int] = TRUTH_PERIOD) -> np.ndarray:
    """(n_months, n_lat) multiplicative factors whose month-length-weighted mean over
    ``truth_period`` is exactly 1 at every latitude (trend × seasonal cycle)."""
    y0, y1 = years
    bnds, mid, ml = month_axis(calendar, y0, y1)
    nyear = y1 - y0 + 1
    year = np.repeat(np.arange(y0, y1 + 1), 12)
    yl = ml.reshape(nyear, 12).sum(axis=1)
    in_p = (np.arange(y0, y1 + 1) >= truth_period[0]) & (np.arange(y0, y1 + 1) <= truth_period[1])
    centre = np.sum(np.arange(y0, y1 + 1)[in_p] * yl[in_p]) / np.sum(yl[in_p])
    trend = 1.0 + 0.01 * (year - centre)
    # seasonal cycle: stronger poleward, opposite phase in the two hemispheres
    frac = ((mid - bnds[0, 0]) % 365.2425) / 365.2425
    amp = 0.6 * np.abs(np.sin(np.radians(lat))) ** 0.5 + 0.1
    phase = np.where(lat >= 0, 0.55, 0.05) * 2 * np.pi
    seas = amp[None, :] * np.cos(2 * np.pi * frac[:, None] - phase[None, :])
    w = ml.reshape(nyear, 12, 1)
    seas_y = seas.reshape(nyear, 12, -1)
    seas_y = seas_y - (seas_y * w).sum(axis=1, keepdims=True) / w.sum(axis=1, keepdims=True)
    return trend[:, None] * (1.0 + seas_y.reshape(nyear * 12, -1))


def member_labels(spec: ModelSpec, n_members: int | None) -> list[str]:
    numbers = spec.member_numbers if n_members is None else tuple(range(1, n_members + 1))
    return [f"r{k}{spec.variant_suffix}" for k in numbers]


def store_path(spec: ModelSpec, experiment: str, member: str, table: str, variable: str,
               version: str) -> str:
    """Path of a store inside the bucket, in today's Pangeo layout."""
    return (f"CMIP6/CMIP/{spec.institution_id}/{spec.source_id}/{experiment}/{member}/"
            f"{table}/{variable}/{spec.grid_label}/v{version}")


def _native_grid(spec: ModelSpec) -> xr.Dataset:
    g = grids.model_grid(spec.source_id)
    if spec.lon_180:
        lon = np.asarray(g.lon)
        shifted = np.where(lon >= 180.0, lon - 360.0, lon)
        order = np.argsort(shifted)
        g = g.isel(lon=order)
        lb = np.asarray(g.lon_bnds)
        lb = np.where(lb[:, :1] >= 180.0, lb - 360.0, lb)
        g = g.assign_coords(lon=np.asarray(shifted)[order]).assign(lon_bnds=(("lon", "bnds"), lb))
        g["lon"].attrs.update(units="degrees_east", standard_name="longitude", bounds="lon_bnds")
    return g


def _coords(g: xr.Dataset) -> dict:
    return {"lat": g["lat"], "lon": g["lon"]}


def _global_attrs(spec: ModelSpec, experiment: str, member: str, table: str, variable: str,
                  version: str) -> dict:
    return {
        "source_id": spec.source_id, "institution_id": spec.institution_id,
        "experiment_id": experiment, "variant_label": member, "member_id": member,
        "table_id": table, "variable_id": variable, "grid_label": spec.grid_label,
        "activity_id": "CMIP", "version_id": f"v{version}",
        "title": f"{spec.source_id} {experiment} {variable} (rhcloud virtual CMIP6 world)",
        "comment": "Synthetic stand-in generated by rhcloud; not real model output.",
    }


def _write(ds: xr.Dataset, path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_zarr(path, zarr_format=2, consolidated=True, mode="w")


def _fx_dataset(g: xr.Dataset, variable: str, values: np.ndarray, attrs: dict) -> xr.Dataset:
    da = xr.DataArray(values.astype(np.float32), dims=("lat", "lon"), coords=_coords(g),
                      attrs=attrs)
    ds = xr.Dataset({variable: da, "lat_bnds": g["lat_bnds"], "lon_bnds": g["lon_bnds"]})
    ds[variable].encoding = {"_FillValue": FILL}
    return ds


def _flux_dataset(g: xr.Dataset, spec: ModelSpec, variable: str, clim_g_m2_yr: np.ndarray,
                  ocean: np.ndarray, params: WorldParams,
                  missing: np.ndarray | None = None) -> xr.Dataset:
    """A monthly store of ``clim_g_m2_yr``; ``ocean`` stored as NaN (0 for an ocean-zero
    model), ``missing`` land (ice sheets a model leaves out) as NaN."""
    y0, y1 = params.years[0], params.years[1] + spec.extra_years
    bnds, mid, _ = month_axis(spec.calendar, y0, y1)
    spy = seconds_per_year(spec.calendar, params.truth_period)
    rate = clim_g_m2_yr / 1000.0 / spy  # kg m-2 s-1
    fac = monthly_factors(spec.calendar, (y0, y1), np.asarray(g.lat), params.truth_period)
    data = (fac[:, :, None] * rate[None, :, :]).astype(np.float32)
    data[:, ocean] = 0.0 if spec.ocean_zero else np.nan
    if missing is not None:
        data[:, missing] = np.nan
    time_attrs = {"units": TIME_UNITS, "calendar": spec.calendar, "bounds": "time_bnds",
                  "standard_name": "time", "axis": "T"}
    ds = xr.Dataset(
        {
            variable: (("time", "lat", "lon"), data, VARIABLE_ATTRS[variable]),
            "time_bnds": (("time", "bnds"), bnds),
            "lat_bnds": g["lat_bnds"],
            "lon_bnds": g["lon_bnds"],
        },
        coords={"time": ("time", mid, time_attrs), **_coords(g)},
    )
    ds[variable].encoding = {"_FillValue": FILL,
                             "chunks": (params.time_chunk, g.lat.size, g.lon.size)}
    if spec.missing_value_only:  # the fill written as data, declared only as missing_value
        ds[variable].values[np.isnan(data)] = MISSING_VALUE
        ds[variable].attrs["missing_value"] = MISSING_VALUE
        ds[variable].encoding["_FillValue"] = None
    ds["time"].encoding = {"dtype": "float64"}
    ds["time_bnds"].encoding = {"dtype": "float64"}
    return ds


def _model_entries(spec: ModelSpec, params: WorldParams, common: planted.SmoothNoise,
                   truth: planted.ModelTruth, bucket: Path) -> tuple[list[dict], dict]:
    """Write every store of one model; return its catalog rows and truth entries."""
    g = _native_grid(spec)
    sftlf = (land_fraction(g) * 100.0).astype(np.float32)
    areacella = grids.cell_area(g, radius=spec.radius_m).values.astype(np.float32)
    ocean = sftlf == 0
    # ice-sheet land the model leaves out (sftlf says land, rh is NaN): the run's land-ice
    # mask, as the model has no sftgif
    ice = (ice_sheet_fraction(g) > 0) & ~ocean if spec.ice_sheets_missing else None
    lat2, lon2 = np.meshgrid(np.asarray(g.lat), np.asarray(g.lon), indexing="ij")
    members = member_labels(spec, params.n_members)
    rows: list[dict] = []
    truth_out: dict = {}
    if spec.fx_experiment is not None:
        # weights as the pipeline will find them: stored float32 fx
        area_w = areacella.astype(float)
        land_w = sftlf.astype(float) / 100.0
        area_note = "areacella"
    else:
        area_w = grids.cell_area(g).values
        land_w = land_fraction(g)  # what the run falls back to: the coastline, float64
        area_note = "areas from bounds; land fraction from the coastline"
    base = {"activity_id": "CMIP", "institution_id": spec.institution_id,
            "source_id": spec.source_id, "grid_label": spec.grid_label,
            "dcpp_init_year": np.nan}

    if spec.fx_experiment is not None:
        fx_member = members[0]
        for var, values, attrs in (
            ("areacella", areacella, {"units": "m2", "standard_name": "cell_area",
                                      "long_name": "Grid-Cell Area for Atmospheric Grid Variables"}),
            ("sftlf", sftlf, {"units": "%", "standard_name": "land_area_fraction",
                              "long_name": "Percentage of the grid cell occupied by land"}),
        ):
            rel = store_path(spec, spec.fx_experiment, fx_member, "fx", var, VERSION)
            ds = _fx_dataset(g, var, values, attrs)
            ds.attrs = _global_attrs(spec, spec.fx_experiment, fx_member, "fx", var, VERSION)
            _write(ds, bucket / rel)
            rows.append({**base, "experiment_id": spec.fx_experiment, "member_id": fx_member,
                         "table_id": "fx", "variable_id": var, "rel": rel, "version": VERSION})

    for k, member in enumerate(members):
        fields = {"rh": truth.rh(lat2, lon2, common, member_index=k)
                  + planted.extra_rh(spec.source_id, lat2, lon2),
                  "npp": truth.npp(lat2, lon2, member_index=k)}
        for f in fields.values():
            f[ocean] = 0.0
            if ice is not None:
                f[ice] = 0.0  # no soil, no flux: what the run counts for the missing cells
        if spec.tiny_negative:  # land where nothing respires, stored slightly negative
            dry = (fields["rh"] <= 0.0) & ~ocean
            fields["rh"][dry if ice is None else dry & ~ice] = TINY_NEGATIVE_G_M2_YR
        for var in params.variables:
            clim = fields[var]
            versions = [(VERSION, 1.0)]
            if spec.two_versions and var == "rh" and k == 0:
                versions.append((OLD_VERSION, OLD_VERSION_FACTOR))
            for version, factor in versions:
                rel = store_path(spec, "historical", member, "Lmon", var, version)
                ds = _flux_dataset(g, spec, var, clim * factor, ocean, params, ice)
                ds.attrs = _global_attrs(spec, "historical", member, "Lmon", var, version)
                _write(ds, bucket / rel)
                rows.append({**base, "experiment_id": "historical", "member_id": member,
                             "table_id": "Lmon", "variable_id": var, "rel": rel,
                             "version": version})
                total = float(np.sum(clim * factor * area_w * land_w) * PG_PER_G)
                truth_out[rel] = {
                    "source_id": spec.source_id, "member_id": member, "variable_id": var,
                    "version": version, "calendar": spec.calendar,
                    "total_PgC_yr": total, "weights": area_note,
                    "superseded": version != VERSION,
                }
    return rows, truth_out


def _catalog_json(csv_name: str, description: str) -> dict:
    return {
        "esmcat_version": "0.1.0",
        "id": "rhcloud-virtual-cmip6",
        "description": description,
        "catalog_file": csv_name,
        "attributes": [{"column_name": c, "vocabulary": ""} for c in CATALOG_COLUMNS
                       if c != "zstore"],
        "assets": {"column_name": "zstore", "format": "zarr"},
        "aggregation_control": {
            "variable_column_name": "variable_id",
            "groupby_attrs": ["activity_id", "institution_id", "source_id", "experiment_id",
                              "table_id", "grid_label"],
            "aggregations": [
                {"type": "union", "attribute_name": "variable_id"},
                {"type": "join_new", "attribute_name": "member_id",
                 "options": {"coords": "minimal", "compat": "override"}},
                {"type": "join_new", "attribute_name": "dcpp_init_year",
                 "options": {"coords": "minimal", "compat": "override"}},
            ],
        },
    }


def truth_key(zstore: str) -> str:
    """The key of a dataset in ``truth.json``: its path inside the bucket (any URL scheme)."""
    return zstore.split(f"/{BUCKET}/", 1)[1].rstrip("/")


def write_catalogs(root: Path, rows: Sequence[dict]) -> None:
    """Write ``pangeo-cmip6.{json,csv}`` (``gs://cmip6/...`` stores, as on Pangeo) and
    ``local-cmip6.{json,csv}`` (``file://`` URLs to the same stores on disk)."""
    df = pd.DataFrame(rows)
    # catalog_file is absolute, as in Pangeo's JSON: intake-esm does not resolve a relative
    # one against a remote JSON. The gs:// catalog lives in the bucket beside the stores.
    for prefix, base_url, csv_url in (
        ("pangeo-cmip6", f"gs://{BUCKET}/", f"gs://{BUCKET}/pangeo-cmip6.csv"),
        ("local-cmip6", (root / BUCKET).resolve().as_uri() + "/",
         str((root / "local-cmip6.csv").resolve())),
    ):
        out = df.assign(zstore=base_url + df["rel"] + "/")[CATALOG_COLUMNS]
        out.to_csv(root / f"{prefix}.csv", index=False)
        (root / f"{prefix}.json").write_text(json.dumps(
            _catalog_json(csv_url, f"rhcloud virtual CMIP6 world ({base_url})"), indent=2))


def generate_world(root: str | Path, params: WorldParams | None = None, *,
                   force: bool = False, workers: int = 2) -> Path:
    """Generate the world under ``root`` (reused as is when its ``world.json`` matches
    ``params`` and ``force`` is false). Returns ``root``."""
    params = params or WorldParams()
    root = Path(root).resolve()  # run.yaml's paths are absolute: usable from anywhere
    stamp = root / "world.json"
    wanted = json.dumps({"generator": GENERATOR_VERSION, **asdict(params)}, sort_keys=True,
                        default=list)
    if not force and stamp.exists() and stamp.read_text() == wanted:
        return root
    (y0, y1), (t0, t1) = params.years, params.truth_period
    if not y0 <= t0 <= t1 <= y1:
        raise ValueError(f"truth period {t0}-{t1} must lie within the world's years {y0}-{y1}")
    unknown = sorted(set(params.models) - set(MODEL_SPECS))
    if unknown:
        raise ValueError(f"unknown models {unknown}; the world knows {sorted(MODEL_SPECS)}")
    if root.exists():
        shutil.rmtree(root)
    bucket = root / BUCKET
    bucket.mkdir(parents=True)
    common = planted.SmoothNoise.from_seed(params.seed)
    truths = planted.model_truths(params.seed)

    def one(sid: str) -> tuple[list[dict], dict]:
        return _model_entries(MODEL_SPECS[sid], params, common, truths[sid], bucket)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(one, params.models))
    rows = [r for rs, _ in results for r in rs]
    datasets = {k: v for _, t in results for k, v in t.items()}
    write_catalogs(root, rows)
    truth = {
        "period": list(params.truth_period),
        "units": {"total_PgC_yr": "Pg C yr-1", "fields": "g C m-2 yr-1"},
        "datasets": datasets,
        "models": {sid: {"scale": truths[sid].scale, "npp_ratio": truths[sid].npp_ratio}
                   for sid in params.models},
        "error_structure": {
            "common": {"correlation": "gaussian", "distance": "chordal km",
                       "length_scale_km": planted.ERROR_LENGTH_KM,
                       "nlme_range_km": planted.ERROR_LENGTH_KM * np.sqrt(2.0),
                       "sd_g_m2_yr": planted.ERROR_SD_G_M2_YR},
            "per_model_sd_g_m2_yr": planted.OWN_SD_FRACTION * planted.ERROR_SD_G_M2_YR,
            "member_spread": "multiplicative, sd 0.03, length scale 1500 km",
        },
        "bias_drivers": {
            "MAP": {"form": "A * tanh((MAP - c) / w) * Rh/(Rh + 50)",
                    "A_g_m2_yr": planted.MAP_BIAS_AMPLITUDE, "c_mm_yr": planted.MAP_BIAS_CENTRE,
                    "w_mm_yr": planted.MAP_BIAS_WIDTH},
            "wet_bias": {"model": planted.WET_BIAS_MODEL,
                         "form": "A * clip((MAP - c) / w, 0, 1) * Rh/(Rh + 50), added",
                         "A_g_m2_yr": planted.WET_BIAS_AMPLITUDE,
                         "c_mm_yr": planted.WET_BIAS_CENTRE, "w_mm_yr": planted.WET_BIAS_WIDTH},
        },
        "quirks": quirks_of(params.models),
    }
    run_config: dict = {"catalog": str((root / "local-cmip6.json").resolve()),
                        "period": list(params.truth_period), "models": list(params.models)}
    if params.observations is not None:
        obs = write_observations(root, params.seed, params.observations)
        truth["observations"] = obs.pop("truth")
        run_config.update(obs)
    (root / "truth.json").write_text(json.dumps(truth, indent=2))
    # a ready config for this world (the demo runs it); paths are absolute
    (root / "run.yaml").write_text(yaml.safe_dump(run_config, sort_keys=False))
    stamp.write_text(wanted)
    return root


def quirks_of(models: Iterable[str]) -> dict[str, list[str]]:
    """The archive quirks carried by each model of the world, in words."""
    out: dict[str, list[str]] = {}
    for sid in models:
        s = MODEL_SPECS[sid]
        q = []
        if s.fx_experiment is None:
            q.append("no fx datasets: areas from bounds")
        elif s.fx_experiment != "historical":
            q.append(f"fx only under {s.fx_experiment}")
        if s.ocean_zero:
            q.append("ocean stored as 0, not NaN")
        if s.extra_years:
            q.append(f"runs {s.extra_years} years past the others")
        if s.two_versions:
            q.append("rh published in two versions")
        if s.lon_180:
            q.append("longitudes in [-180, 180)")
        if s.ice_sheets_missing:
            q.append("ice sheets (Antarctica, Greenland) left missing while sftlf says land")
        if s.tiny_negative:
            q.append(f"tiny negative rh ({TINY_NEGATIVE_G_M2_YR} g m-2 yr-1) where nothing "
                     "respires")
        if s.missing_value_only:
            q.append(f"fill value {float(MISSING_VALUE):g} declared only as missing_value")
        if s.variant_suffix != "i1p1f1":
            q.append(f"members r*{s.variant_suffix}")
        if q:
            out[sid] = q
    return out
