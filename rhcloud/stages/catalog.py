"""Catalog stage: open an intake-esm catalog and choose the datasets of a run.

Everything here works on the catalog's table (a DataFrame) and reads no data. The choices:

- flux datasets: ``experiment``/``table`` rows of the requested variables and models;
- versions: only the newest version of a duplicated dataset is kept (the version comes from
  the ``version`` column, or from ``v<YYYYMMDD>`` in ``zstore`` where the column is absent);
- members: ``first`` (r1i1p1f1, else the lowest-numbered member by r, i, p, f — so f2 members
  count), ``all``, or an explicit list;
- fx: ``areacella``/``sftlf`` matched by ``source_id`` + ``grid_label`` across experiments and
  members (same member and experiment first, then historical, piControl, then any); when
  none exists the dataset falls back to areas from cell bounds, and says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from rhcloud.config import Config
from rhcloud.errors import Exclusion, RhcloudError
from rhcloud.storage.paths import is_remote

KEY = ["source_id", "experiment_id", "member_id", "table_id", "variable_id", "grid_label"]
REQUIRED_COLUMNS = ("zstore", *KEY)
"""Columns an ESM collection must have for a run (``version`` is optional: from zstore)."""
FX_VARIABLES = ("areacella", "sftlf", "sftgif")
"""fx matched to each dataset; ``sftgif`` (land ice, %) is optional and unnoted when absent."""
_MEMBER = re.compile(r"^r(\d+)i(\d+)p(\d+)f(\d+)$")
_VERSION_IN_PATH = re.compile(r"/v(\d{8})/?$")


class CatalogError(RhcloudError):
    """The catalog query cannot be satisfied; the message lists what exists."""


def open_catalog(url: str, storage_options: dict[str, Any] | None = None):
    """Open an intake-esm catalog (JSON path or URL) and return the ``esm_datastore``."""
    import intake_esm

    # as given: intake-esm reads the CSV with polars, whose cloud options are strings only
    opts = storage_options if is_remote(url) else None
    try:
        return intake_esm.esm_datastore(url, storage_options=opts or {})
    except Exception as exc:  # intake-esm raises many types; name the catalog either way
        raise CatalogError(f"cannot open catalog {url}: {type(exc).__name__}: {exc}") from exc


def member_key(member_id: str) -> tuple[int, int, int, int] | tuple[float]:
    """Sort key of a variant label: (r, i, p, f) numerically; unknown forms sort last."""
    m = _MEMBER.match(str(member_id))
    return tuple(int(x) for x in m.groups()) if m else (float("inf"),)


def member_rank(members: pd.Series) -> pd.Series:
    """A sortable string column ordering variant labels as ``member_key`` does."""
    def fmt(m: str) -> str:
        key = member_key(m)
        return "~" if len(key) == 1 else "".join(f"{int(k):09d}" for k in key)
    return members.astype(str).map(fmt)


def with_versions(df: pd.DataFrame) -> pd.DataFrame:
    """The table with a string ``version`` column (from the column, else from ``zstore``)."""
    df = df.copy()
    from_path = df["zstore"].astype(str).str.extract(_VERSION_IN_PATH, expand=False)
    if "version" in df.columns:
        version = df["version"].astype("string").str.replace(r"^v", "", regex=True)
        df["version"] = version.fillna(from_path).fillna("")
    else:
        df["version"] = from_path.fillna("")
    df["version"] = df["version"].astype(str)
    return df


def newest_versions(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep the newest version of each dataset; return (kept, superseded). A row repeated
    in the catalog (the same store listed twice) is one dataset: its store is the one
    used, never reported as superseded."""
    df = with_versions(df).sort_values(KEY + ["version"])
    newest = ~df.duplicated(KEY, keep="last")
    kept, older = df[newest], df[~newest]
    older = older[~older["zstore"].isin(kept["zstore"])].drop_duplicates("zstore")
    return kept, older


def choose_members(df: pd.DataFrame, members: str | list[str]) -> pd.DataFrame:
    """Apply the member policy per (source_id, variable_id)."""
    if members == "all":
        return df
    if isinstance(members, list):
        return df[df["member_id"].isin(members)]
    df = df.assign(_mkey=member_rank(df["member_id"])).sort_values(["source_id", "variable_id", "_mkey", "grid_label"])
    first = df.groupby(["source_id", "variable_id"], sort=False)["member_id"].transform("first")
    return df[df["member_id"] == first].drop(columns="_mkey")


def _one_grid_per_dataset(df: pd.DataFrame) -> pd.DataFrame:
    """Where a member is published on several grids, keep the native one (gn before gr)."""
    order = df["grid_label"].map(lambda g: (0 if g == "gn" else 1, g))
    df = df.assign(_g=order).sort_values(["source_id", "member_id", "variable_id", "_g"])
    keep = ~df.duplicated(["source_id", "member_id", "variable_id"], keep="first")
    return df[keep].drop(columns="_g")


def _describe(df: pd.DataFrame, column: str) -> str:
    vals = sorted(df[column].dropna().astype(str).unique())
    return ", ".join(vals) if vals else "(none)"


def select_flux(df: pd.DataFrame, config: Config) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The flux datasets of a run: (selected rows, superseded versions)."""
    rows = df[(df["experiment_id"] == config.experiment) & (df["table_id"] == config.table)]
    if rows.empty:
        raise CatalogError(
            f"no {config.experiment}/{config.table} rows in the catalog; experiments: "
            f"{_describe(df, 'experiment_id')}; tables: {_describe(df, 'table_id')}")
    rows = rows[rows["variable_id"].isin(config.variables)]
    if rows.empty:
        raise CatalogError(f"no {config.experiment}/{config.table} rows for variables "
                           f"{config.variables}; variables present: "
                           f"{_describe(df[df.table_id == config.table], 'variable_id')}")
    models = config.model_list
    if models is not None:
        found = rows[rows["source_id"].isin(models)]
        if found.empty:
            raise CatalogError(
                f"none of the models {models} has {config.experiment}/{config.table} "
                f"{config.variables} in the catalog; models present: {_describe(rows, 'source_id')}")
        rows = found
    kept, superseded = newest_versions(rows)
    chosen = _one_grid_per_dataset(choose_members(kept, config.members))
    if chosen.empty:
        raise CatalogError(f"no member matches {config.members!r}; members present: "
                           f"{_describe(kept, 'member_id')}")
    return chosen.reset_index(drop=True), superseded.reset_index(drop=True)


def missing_models(selected: pd.DataFrame, config: Config) -> list[tuple[str, str]]:
    """(model, what is missing) for requested models/variables that the selection lacks."""
    models = config.model_list
    if models is None:
        return []
    out = []
    for m in models:
        have = set(selected.loc[selected["source_id"] == m, "variable_id"])
        lacking = [v for v in config.variables if v not in have]
        if lacking:
            out.append((m, f"no {config.experiment}/{config.table} {'/'.join(lacking)} "
                           f"for members {config.members!r} in the catalog"))
    return out


def _fx_rank(fx: pd.DataFrame, experiment: str, member: str) -> pd.Series:
    exp_rank = fx["experiment_id"].map(
        lambda e: 0 if e == experiment else 1 if e == "historical" else 2 if e == "piControl" else 3)
    same_member = (fx["member_id"] != member).astype(int)
    return exp_rank * 2 + same_member


def match_fx(selected: pd.DataFrame, catalog_df: pd.DataFrame) -> pd.DataFrame:
    """Add ``areacella_zstore``, ``sftlf_zstore``, ``sftgif_zstore`` and ``fx_note`` to each
    selected row."""
    fx_all = with_versions(catalog_df[catalog_df["variable_id"].isin(FX_VARIABLES)])
    out = selected.copy()
    notes = []
    for var in FX_VARIABLES:
        out[f"{var}_zstore"] = None
    for i, row in out.iterrows():
        note = []
        for var in FX_VARIABLES:
            cand = fx_all[(fx_all["variable_id"] == var)
                          & (fx_all["source_id"] == row["source_id"])
                          & (fx_all["grid_label"] == row["grid_label"])]
            if cand.empty:
                if var == "sftgif":  # few models publish it: the land-ice mask stands in
                    continue
                note.append("no areacella: areas from cell bounds" if var == "areacella"
                            else "no sftlf: land fraction from the coastline")
                continue
            cand = cand.assign(_r=_fx_rank(cand, row["experiment_id"], row["member_id"]),
                               _v=cand["version"])
            best = cand.sort_values(["_r", "_v"], ascending=[True, False]).iloc[0]
            out.at[i, f"{var}_zstore"] = best["zstore"]
            if best["experiment_id"] != row["experiment_id"]:
                note.append(f"{var} from {best['experiment_id']}/{best['member_id']}")
        notes.append("; ".join(note))
    out["fx_note"] = notes
    return out


def check_columns(df: pd.DataFrame, name: str = "the catalog") -> None:
    """One clear CatalogError when the catalog lacks a column a run needs, listing what it
    has."""
    lacking = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if lacking:
        raise CatalogError(f"{name} lacks the required column{'s' if len(lacking) > 1 else ''} "
                           f"{', '.join(lacking)}; it has: {', '.join(map(str, df.columns))}")


def usable_rows(df: pd.DataFrame, config: Config) -> tuple[pd.DataFrame, list[Exclusion]]:
    """The catalog rows whose required cells hold a value (as strings, whatever dtype the
    catalog gave them), and an exclusion per unusable row that might be one of the run's
    (what it does give matches the query)."""
    df = df.copy()
    empty = pd.DataFrame({c: df[c].isna() | (df[c].astype(str).str.strip() == "")
                          for c in REQUIRED_COLUMNS}, index=df.index)
    wanted = {"experiment_id": [config.experiment], "table_id": [config.table],
              "variable_id": list(config.variables) + list(FX_VARIABLES),
              "source_id": config.model_list}
    bad: list[Exclusion] = []
    for i in df.index[empty.any(axis=1)]:
        row = df.loc[i]
        if any(allowed is not None and not empty.at[i, c] and str(row[c]).strip()
               not in allowed for c, allowed in wanted.items()):
            continue  # another experiment, table, variable or model: not the run's
        who = str(row["zstore"]) if not empty.at[i, "zstore"] else \
            " ".join(str(row[c]) for c in KEY if not empty.at[i, c]) or f"catalog row {i}"
        lacking = [c for c in REQUIRED_COLUMNS if empty.at[i, c]]
        bad.append(Exclusion(who, f"catalog row lacks {', '.join(lacking)}", "catalog"))
    df = df[~empty.any(axis=1)]
    for c in REQUIRED_COLUMNS:
        df[c] = df[c].astype(str).str.strip()
    return df, bad


def select(catalog_df: pd.DataFrame, config: Config,
           excluded: list[Exclusion] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The run's datasets with their fx matches, and the superseded versions; rows of the
    run's experiment and table that lack a required value are appended to ``excluded``."""
    check_columns(catalog_df, f"catalog {config.catalog}")
    catalog_df, bad = usable_rows(catalog_df, config)
    if excluded is not None:
        excluded += bad
    chosen, superseded = select_flux(catalog_df, config)
    return match_fx(chosen, catalog_df), superseded


@dataclass
class Selection:
    """What the catalog stage chose: one row per dataset (with its fx matches), the older
    versions it ignored, and the requested models the catalog lacks (model, why)."""

    datasets: pd.DataFrame
    superseded: pd.DataFrame = field(default_factory=pd.DataFrame)
    missing: list[tuple[str, str]] = field(default_factory=list)
    excluded: list[Exclusion] = field(default_factory=list)  # catalog rows not usable

    def __len__(self) -> int:
        return len(self.datasets)


def select_datasets(config: Config) -> Selection:
    """The catalog stage: open ``config.catalog`` and choose the run's datasets."""
    cat = open_catalog(config.catalog, config.storage_options)
    try:
        df = cat.df
    except Exception as exc:  # noqa: BLE001 - intake-esm's own failure reading the table
        raise CatalogError(f"cannot read the table of catalog {config.catalog}: "
                           f"{type(exc).__name__}: {exc}") from exc
    excluded: list[Exclusion] = []
    chosen, superseded = select(df, config, excluded)
    return Selection(chosen, superseded, missing_models(chosen, config), excluded)


SUMMARY_COLUMNS = ["source_id", "member_id", "variable_id", "grid_label", "version", "fx_note",
                   "zstore"]


def format_selection(selection: pd.DataFrame) -> str:
    """The selection as a plain-text table, one dataset a line."""
    view = selection[SUMMARY_COLUMNS].assign(_m=member_rank(selection["member_id"]))
    view = view.sort_values(["source_id", "variable_id", "_m"]).drop(columns="_m")
    return view.to_string(index=False)
