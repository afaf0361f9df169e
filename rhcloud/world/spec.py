"""What the virtual world holds: each model's institution, grid label, calendar, members,
and the archive quirks it carries (see DESIGN.md, "The virtual CMIP6 world")."""

from __future__ import annotations

from dataclasses import dataclass, field

from rhcloud.config import PAPER_MODELS


@dataclass(frozen=True)
class ModelSpec:
    source_id: str
    institution_id: str
    grid_label: str
    calendar: str
    variant_suffix: str = "i1p1f1"  # member label = r<k><suffix>
    radius_m: float = 6_371_000.0  # the model's own sphere for areacella
    lon_180: bool = False  # stores longitudes in [-180, 180)
    fx_experiment: str | None = "historical"  # None: no fx at all
    ocean_zero: bool = False  # ocean stored as 0 rather than NaN
    extra_years: int = 0  # run extends past the world's last year
    two_versions: bool = False  # an older, superseded version of rh is also published
    member_numbers: tuple[int, ...] = field(default=(1,))
    ice_sheets_missing: bool = False  # rh NaN over Antarctica and Greenland (sftlf 100 %)
    tiny_negative: bool = False  # cells without respiration stored as a tiny negative flux
    missing_value_only: bool = False  # fill -1e20 declared only as missing_value


__all__ = ["PAPER_MODELS", "MODEL_SPECS", "ModelSpec", "VERSION", "OLD_VERSION"]



MODEL_SPECS: dict[str, ModelSpec] = {s.source_id: s for s in [
    ModelSpec("BCC-CSM2-MR", "BCC", "gn", "365_day", fx_experiment=None),
    ModelSpec("BCC-ESM1", "BCC", "gn", "365_day"),
    ModelSpec("CanESM5", "CCCma", "gn", "365_day", radius_m=6_371_220.0, ocean_zero=True,
              member_numbers=(1, 2, 3)),
    ModelSpec("CESM2", "NCAR", "gn", "noleap", radius_m=6_371_220.0,
              member_numbers=(1, 2, 10, 11)),
    ModelSpec("CNRM-ESM2-1", "CNRM-CERFACS", "gr", "gregorian", variant_suffix="i1p1f2",
              radius_m=6_371_229.0, member_numbers=(1, 2)),
    ModelSpec("E3SM-1-1-ECA", "E3SM-Project", "gr", "noleap", lon_180=True),
    ModelSpec("IPSL-CM6A-LR", "IPSL", "gr", "gregorian", radius_m=6_371_229.0,
              member_numbers=(1, 2), ice_sheets_missing=True),
    ModelSpec("MIROC-ES2L", "MIROC", "gn", "gregorian", variant_suffix="i1p1f2",
              two_versions=True),
    ModelSpec("MPI-ESM1-2-LR", "MPI-M", "gn", "proleptic_gregorian", radius_m=6_371_000.0),
    ModelSpec("NorCPM1", "NCC", "gn", "noleap", extra_years=3),
    ModelSpec("NorESM2-LM", "NCC", "gn", "noleap", missing_value_only=True),
    ModelSpec("SAM0-UNICON", "SNU", "gn", "noleap"),
    ModelSpec("UKESM1-0-LL", "MOHC", "gn", "360_day", variant_suffix="i1p1f2",
              fx_experiment="piControl", member_numbers=(1, 2), tiny_negative=True),
]}

VERSION = "20190601"
OLD_VERSION = "20190301"
