"""The run configuration: one dataclass whose defaults are the paper's choices, read from YAML.

Key names are part of the user contract (DESIGN.md): new keys may be added, none renamed.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rhcloud.errors import RhcloudError
from rhcloud.storage.paths import is_url, names_a_file

PANGEO_CATALOG = "https://storage.googleapis.com/cmip6/pangeo-cmip6.json"

PAPER_MODELS: tuple[str, ...] = (
    "BCC-CSM2-MR", "BCC-ESM1", "CanESM5", "CESM2", "CNRM-ESM2-1", "E3SM-1-1-ECA",
    "IPSL-CM6A-LR", "MIROC-ES2L", "MPI-ESM1-2-LR", "NorCPM1", "NorESM2-LM", "SAM0-UNICON",
    "UKESM1-0-LL",
)

FLUX_VARIABLES = ("rh", "npp")


class ConfigError(RhcloudError):
    """A configuration that cannot be run; the message names the key and what is wrong."""


DRIVER_STRUCTURES = ("exponential", "gaussian", "spherical", "linear", "rational")
"""The GLS correlation structures of the paper (``rhcloud.drivers.correlation.STRUCTURES``)."""


def _unknown_keys(section: str, data: dict[str, Any], known: list[str]) -> None:
    """ConfigError for keys of ``data`` not in ``known``, suggesting the closest one."""
    unknown = [k for k in data if k not in known]
    if not unknown:
        return
    hints = []
    for k in unknown:
        close = difflib.get_close_matches(str(k), known, n=1)
        hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    where = f"{section}: unknown keys" if section else "unknown configuration keys"
    raise ConfigError(f"{where} {', '.join(hints)}; known keys: {known}")


def _section(cls, section: str, data: Any):
    """A typed section from its YAML mapping (None: the defaults)."""
    if isinstance(data, cls):
        return data
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise ConfigError(f"{section}: expected a mapping of keys to values, got {data!r}")
    _unknown_keys(section, data, [f.name for f in dataclasses.fields(cls)])
    return cls(**data)


@dataclass
class DriversOptions:
    """``drivers:`` — the GLS AIC table and the GAMM of the ESM residual field."""

    grid: str | None = None  # fit on another grid (conservative means); None: the reference
    structures: list[str] = field(default_factory=lambda: list(DRIVER_STRUCTURES))
    nugget: bool = True  # each structure also with a nugget (the paper's table)
    residuals: list[str] = field(default_factory=lambda: ["median", "mean"])
    distance: str = "great-circle"  # or lonlat (nlme's Euclidean degrees)
    likelihood: str = "auto"  # exact | vecchia | auto (Vecchia above 15,000 cells)
    per_member: bool = False  # the ESM residual over members rather than models

    def __post_init__(self) -> None:
        if not isinstance(self.residuals, list) or not set(self.residuals) <= {"median", "mean"}:
            raise ConfigError(f"drivers.residuals: expected a subset of ['median', 'mean'] "
                              f"([] skips the drivers), got {self.residuals!r}")
        if self.distance not in ("great-circle", "lonlat"):
            raise ConfigError(f"drivers.distance: expected great-circle or lonlat, got "
                              f"{self.distance!r}")
        bad = [x for x in self.structures if x not in DRIVER_STRUCTURES]
        if not isinstance(self.structures, list) or bad:
            raise ConfigError(f"drivers.structures: expected a list from "
                              f"{list(DRIVER_STRUCTURES)}, got {self.structures!r}")
        if self.likelihood not in ("auto", "exact", "vecchia"):
            raise ConfigError(f"drivers.likelihood: expected auto, exact or vecchia, got "
                              f"{self.likelihood!r}")
        for key in ("nugget", "per_member"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"drivers.{key}: expected true or false, got "
                                  f"{getattr(self, key)!r}")

    @property
    def nuggets(self) -> tuple[bool, ...]:
        """The nugget settings each structure is fitted with."""
        return (False, True) if self.nugget else (False,)


EVALUATION_WEIGHTS = ("cell", "area")
SCORE_KEYS = ("bias", "rmse", "distribution", "response")
DEFAULT_SCORE_WEIGHTS = {"bias": 1.0, "rmse": 2.0, "distribution": 1.0, "response": 1.0}
"""``evaluation.score_weights`` defaults (ILAMB's for bias, RMSE and spatial distribution;
docs/methods.md, "Scores")."""
REGION_SETS = ("ar6", "band")


@dataclass
class EvaluationOptions:
    """``evaluation:`` — the cells and weights of Table 1, the residual fields and the
    drivers' cells, and the regions, functional responses and scores beyond Table 1.
    ``min_landfrac``: the least land fraction of a reference cell (the coastline's on the
    reference grid) to be evaluated, in [0, 1); ``weights``: ``cell`` (each cell counts once,
    the paper's) or ``area`` (cell area × land fraction). Totals and the conservation check
    stay over all land."""

    min_landfrac: float = 0.5
    weights: str = "cell"
    score_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_SCORE_WEIGHTS))
    regions: list[str] = field(default_factory=lambda: list(REGION_SETS))  # [] skips them
    region_resolution: float = 0.25  # degrees of the sub-grid the AR6 polygons are tested on
    responses: list[str] = field(default_factory=lambda: ["MAP", "MAT", "SOC"])
    response_bins: int = 10  # quantile bins of each covariate over the observed cells
    response_edges: dict[str, list[float]] = field(default_factory=dict)  # explicit edges
    portrait_members: bool = False  # the portrait plot also shows every member

    def __post_init__(self) -> None:
        if isinstance(self.min_landfrac, bool) or not isinstance(self.min_landfrac,
                                                                 int | float) \
                or not 0.0 <= float(self.min_landfrac) < 1.0:
            raise ConfigError(f"evaluation.min_landfrac: expected a number in [0, 1), got "
                              f"{self.min_landfrac!r}")
        self.min_landfrac = float(self.min_landfrac)
        if self.weights not in EVALUATION_WEIGHTS:
            raise ConfigError(f"evaluation.weights: expected one of "
                              f"{list(EVALUATION_WEIGHTS)}, got {self.weights!r}")
        w = self.score_weights
        if not isinstance(w, dict):
            raise ConfigError(f"evaluation.score_weights: expected a mapping of {list(SCORE_KEYS)}"
                              f" to weights, got {w!r}")
        _unknown_keys("evaluation.score_weights", w, list(SCORE_KEYS))
        bad = {k: v for k, v in w.items() if isinstance(v, bool)
               or not isinstance(v, int | float) or not v >= 0}
        if bad:
            raise ConfigError(f"evaluation.score_weights: weights must be numbers >= 0, got {bad}")
        # keys left out keep their default
        self.score_weights = {**DEFAULT_SCORE_WEIGHTS, **{k: float(v) for k, v in w.items()}}
        if sum(self.score_weights.values()) <= 0:
            raise ConfigError("evaluation.score_weights: at least one weight must be positive")
        if not isinstance(self.regions, list) or not set(self.regions) <= set(REGION_SETS):
            raise ConfigError(f"evaluation.regions: expected a subset of {list(REGION_SETS)}, "
                              f"got {self.regions!r}")
        if isinstance(self.region_resolution, bool) or not isinstance(
                self.region_resolution, int | float) or not 0 < self.region_resolution <= 1:
            raise ConfigError(f"evaluation.region_resolution: expected degrees in (0, 1], got "
                              f"{self.region_resolution!r}")
        if not isinstance(self.responses, list) or not all(isinstance(c, str)
                                                           for c in self.responses):
            raise ConfigError(f"evaluation.responses: expected a list of covariate names, got "
                              f"{self.responses!r}")
        if isinstance(self.response_bins, bool) or not isinstance(self.response_bins, int) \
                or self.response_bins < 2:
            raise ConfigError(f"evaluation.response_bins: expected an integer >= 2, got "
                              f"{self.response_bins!r}")
        if not isinstance(self.response_edges, dict):
            raise ConfigError(f"evaluation.response_edges: expected a mapping of covariate to "
                              f"a list of edges, got {self.response_edges!r}")
        for name, edges in self.response_edges.items():
            ok = isinstance(edges, list) and len(edges) >= 3 and all(
                isinstance(e, int | float) and not isinstance(e, bool) for e in edges)
            if not ok or any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
                raise ConfigError(f"evaluation.response_edges.{name}: expected at least 3 "
                                  f"increasing numbers, got {edges!r}")
        if not isinstance(self.portrait_members, bool):
            raise ConfigError(f"evaluation.portrait_members: expected true or false, got "
                              f"{self.portrait_members!r}")


CLUSTER_KINDS = ("local", "address", "gateway")


@dataclass
class ClusterOptions:
    """``cluster:`` — where the data stages run (``rhcloud.cluster``). ``local``: a
    LocalCluster (``n_workers``, default one per core; ``threads_per_worker``,
    ``memory_limit``, ``processes``, ``dashboard_address``); ``address``: a running
    scheduler; ``gateway``: a dask-gateway cluster (``address``, ``proxy_address``,
    ``public_address``, ``auth``, ``cluster_options``, ``workers`` or ``adapt``,
    ``wait_for_workers``, ``timeout`` in s)."""

    kind: str = "local"
    n_workers: int | None = None
    threads_per_worker: int = 1
    memory_limit: str | int | float = "auto"
    processes: bool = True
    dashboard_address: str = ":0"
    address: str | None = None
    proxy_address: str | None = None
    public_address: str | None = None
    auth: str | dict[str, Any] | None = None
    cluster_options: dict[str, Any] = field(default_factory=dict)
    workers: int = 2
    adapt: dict[str, int] | None = None
    wait_for_workers: bool = True
    timeout: float = 300.0

    def __post_init__(self) -> None:
        if self.kind not in CLUSTER_KINDS:
            raise ConfigError(f"cluster.kind: expected one of {list(CLUSTER_KINDS)}, got "
                              f"{self.kind!r}")
        if self.kind == "address" and not self.address:
            raise ConfigError("cluster: kind 'address' needs an 'address' (tcp://host:port)")
        if self.adapt is not None:
            if not isinstance(self.adapt, dict):
                raise ConfigError(f"cluster.adapt: expected {{minimum, maximum}}, got "
                                  f"{self.adapt!r}")
            _unknown_keys("cluster.adapt", self.adapt, ["minimum", "maximum"])
        if self.n_workers is not None and int(self.n_workers) < 1:
            raise ConfigError(f"cluster.n_workers: must be at least 1, got {self.n_workers}")


ENTRY_KEYS = ["name", "reader", "path", "variable", "units", "categorical", "band",
              "reproject", "block_degrees", "chunk_pixels", "scale_factor", "landfrac",
              "period", "citation", "classes"]
"""Keys of a product, NPP-reference or covariate entry (``docs/products.md``)."""


def _entry(section: str, entry: Any) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise ConfigError(f"{section}: expected a mapping with reader and path, got {entry!r}")
    _unknown_keys(section, entry, ENTRY_KEYS)
    for key in ("reader", "path"):
        if key not in entry:
            raise ConfigError(f"{section}: missing {key!r}")
    return entry


@dataclass
class Config:
    """A run of rhcloud. Units: period in calendar years (inclusive)."""

    catalog: str = PANGEO_CATALOG
    storage_options: dict[str, Any] = field(default_factory=lambda: {"token": "anon"})
    experiment: str = "historical"
    table: str = "Lmon"
    models: list[str] | str = field(default_factory=lambda: list(PAPER_MODELS))
    members: str | list[str] = "first"
    variables: list[str] = field(default_factory=lambda: list(FLUX_VARIABLES))
    period: tuple[int, int] = (1990, 2010)
    reference_grid: str = "CNRM-ESM2-1"
    products: list[dict[str, Any]] = field(default_factory=list)
    npp_reference: dict[str, Any] | None = None
    covariates: dict[str, dict[str, Any]] = field(default_factory=dict)
    drivers: DriversOptions = field(default_factory=DriversOptions)
    evaluation: EvaluationOptions = field(default_factory=EvaluationOptions)
    cluster: ClusterOptions = field(default_factory=ClusterOptions)
    evaluation: EvaluationOptions = field(default_factory=EvaluationOptions)
    output: str = "./rhcloud-output"
    # writing to your own bucket usually needs other credentials than reading Pangeo (anon)
    output_storage_options: dict[str, Any] | None = None
    min_datasets: int = 1
    open_concurrency: int = 16
    # datasets opened and submitted ahead of the one being gathered: keeps the cluster busy
    # while bounding what the client holds (open stores, task graphs)
    in_flight: int = 64
    # climatologies and drivers fits kept between runs: None → <output>/cache, false → none
    cache: str | bool | None = None
    resume: bool = True  # read finished climatologies from the cache (false: recompute all)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if isinstance(self.models, str) and self.models != "all":
            raise ConfigError(f"models: expected a list of source_ids or 'all', got {self.models!r}")
        if isinstance(self.members, str) and self.members not in ("first", "all"):
            raise ConfigError(
                f"members: expected 'first', 'all' or a list of member_ids, got {self.members!r}")
        bad = [v for v in self.variables if v not in FLUX_VARIABLES]
        if bad or not self.variables:
            raise ConfigError(f"variables: expected a non-empty subset of {list(FLUX_VARIABLES)}, "
                              f"got {self.variables!r}")
        try:
            y0, y1 = (int(y) for y in self.period)
        except (TypeError, ValueError):
            raise ConfigError(f"period: expected [first_year, last_year], got {self.period!r}") \
                from None
        if y1 < y0:
            raise ConfigError(f"period: last year {y1} is before first year {y0}")
        self.period = (y0, y1)
        if self.min_datasets < 1:
            raise ConfigError("min_datasets: must be at least 1")
        if self.open_concurrency < 1 or self.in_flight < 1:
            raise ConfigError(f"open_concurrency and in_flight: must be at least 1, got "
                              f"{self.open_concurrency} and {self.in_flight}")
        self.drivers = _section(DriversOptions, "drivers", self.drivers)
        self.evaluation = _section(EvaluationOptions, "evaluation", self.evaluation)
        self.cluster = _section(ClusterOptions, "cluster", self.cluster)
        self.evaluation = _section(EvaluationOptions, "evaluation", self.evaluation)
        if not isinstance(self.products, list):
            raise ConfigError(f"products: expected a list of entries, got {self.products!r}")
        for i, e in enumerate(self.products):
            _entry(f"products[{i}] ({e.get('name', '?') if isinstance(e, dict) else e})", e)
        if self.npp_reference is not None:
            _entry("npp_reference", self.npp_reference)
        if not isinstance(self.covariates, dict):
            raise ConfigError(f"covariates: expected a mapping of name to entry, got "
                              f"{self.covariates!r}")
        for name, e in self.covariates.items():
            _entry(f"covariates.{name}", e)
        if self.cache is True or not isinstance(self.cache, str | bool | type(None)):
            raise ConfigError(f"cache: expected a directory or URL, or false, got {self.cache!r}")

    @property
    def model_list(self) -> list[str] | None:
        """The requested models, or None for all models in the catalog."""
        return None if self.models == "all" else list(self.models)

    @property
    def write_storage_options(self) -> dict[str, Any] | None:
        """fsspec options for writing the outputs and the cache (and reading them back):
        ``output_storage_options``, else ``storage_options``."""
        if self.output_storage_options is None:
            return self.storage_options
        return self.output_storage_options

    @property
    def cache_url(self) -> str | None:
        """Where climatologies and the drivers' fits are cached (None: no cache)."""
        if self.cache is False or self.cache == "":
            return None
        return str(self.cache) if self.cache else f"{str(self.output).rstrip('/')}/cache"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["period"] = list(self.period)
        return d


def _field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(Config)]


def config_from_dict(data: dict[str, Any] | None, base_dir: Path | None = None) -> Config:
    """Build a Config from a mapping (e.g. parsed YAML). Unknown keys are an error that
    suggests the closest known key; relative paths stay as given."""
    data = dict(data or {})
    _unknown_keys("", data, _field_names())
    if base_dir is not None and "catalog" in data and not is_url(data["catalog"]):
        path = Path(data["catalog"])
        if not path.is_absolute():
            data["catalog"] = str((base_dir / path).resolve())
    if base_dir is not None:
        data = _resolve_paths(data, base_dir)
    if "period" in data and data["period"] is not None:
        data["period"] = tuple(data["period"])
    return Config(**data)


def _resolve(path: Any, base_dir: Path) -> Any:
    if isinstance(path, list):
        return [_resolve(p, base_dir) for p in path]
    if isinstance(path, str) and not is_url(path) and not Path(path).is_absolute():
        return str((base_dir / path).resolve())
    return path


def _resolve_paths(data: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """Relative file paths of products, NPP reference and covariates are taken relative to
    the config file, as the catalog's is."""
    def entry(e: Any) -> Any:
        if not isinstance(e, dict):
            return e
        out = {**e, "path": _resolve(e["path"], base_dir)} if "path" in e else dict(e)
        if isinstance(e.get("landfrac"), str) and names_a_file(e["landfrac"]):
            out["landfrac"] = _resolve(e["landfrac"], base_dir)
        return out

    if isinstance(data.get("products"), list):
        data["products"] = [entry(e) for e in data["products"]]
    if isinstance(data.get("npp_reference"), dict):
        data["npp_reference"] = entry(data["npp_reference"])
    if isinstance(data.get("covariates"), dict):
        data["covariates"] = {k: entry(e) for k, e in data["covariates"].items()}
    return data


def load_config(path: str | Path | None) -> Config:
    """Read a YAML configuration file (every key optional). ``None`` gives the defaults.
    A relative catalog path is taken relative to the file."""
    if path is None:
        return Config()
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())  # a config is data: never yaml.load
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"configuration file {path} is not valid YAML: {exc}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"configuration file {path}: expected a mapping of keys to values")
    return config_from_dict(data, base_dir=path.parent)
