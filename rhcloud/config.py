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

PANGEO_CATALOG = "https://storage.googleapis.com/cmip6/pangeo-cmip6.json"

PAPER_MODELS: tuple[str, ...] = (
    "BCC-CSM2-MR", "BCC-ESM1", "CanESM5", "CESM2", "CNRM-ESM2-1", "E3SM-1-1-ECA",
    "IPSL-CM6A-LR", "MIROC-ES2L", "MPI-ESM1-2-LR", "NorCPM1", "NorESM2-LM", "SAM0-UNICON",
    "UKESM1-0-LL",
)

FLUX_VARIABLES = ("rh", "npp")


class ConfigError(ValueError):
    """A configuration that cannot be run; the message names the key and what is wrong."""


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
    drivers: dict[str, Any] = field(default_factory=dict)
    cluster: dict[str, Any] = field(default_factory=lambda: {"kind": "local"})
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
        self._validate_drivers()
        if self.cache is True or not isinstance(self.cache, str | bool | type(None)):
            raise ConfigError(f"cache: expected a directory or URL, or false, got {self.cache!r}")

    @property
    def model_list(self) -> list[str] | None:
        """The requested models, or None for all models in the catalog."""
        return None if self.models == "all" else list(self.models)

    def _validate_drivers(self) -> None:
        known = {"grid", "structures", "residuals", "distance", "per_member"}
        unknown = sorted(set(self.drivers) - known)
        if unknown:
            raise ConfigError(f"drivers: unknown keys {unknown}; known: {sorted(known)}")
        residuals = self.drivers.get("residuals", ["median", "mean"])
        if not isinstance(residuals, list) or not set(residuals) <= {"median", "mean"}:
            raise ConfigError(f"drivers.residuals: expected a subset of ['median', 'mean'] "
                              f"([] skips the drivers), got {residuals!r}")
        if self.drivers.get("distance", "great-circle") not in ("great-circle", "lonlat"):
            raise ConfigError(f"drivers.distance: expected great-circle or lonlat, got "
                              f"{self.drivers['distance']!r}")

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
    names = _field_names()
    unknown = [k for k in data if k not in names]
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(k, names, n=1)
            hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ConfigError(f"unknown configuration keys: {', '.join(hints)}; known keys: {names}")
    if base_dir is not None and "catalog" in data and "://" not in str(data["catalog"]):
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
    if isinstance(path, str) and "://" not in path and not Path(path).is_absolute():
        return str((base_dir / path).resolve())
    return path


def _resolve_paths(data: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """Relative file paths of products, NPP reference and covariates are taken relative to
    the config file, as the catalog's is."""
    def entry(e: Any) -> Any:
        return {**e, "path": _resolve(e["path"], base_dir)} if isinstance(e, dict) \
            and "path" in e else e

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
