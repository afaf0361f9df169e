"""Catalog stage: member policies, versions, fx matching — on the virtual world's catalog and
on the real 2020 listing of the Pangeo bucket."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from rhcloud.cli import main
from rhcloud.config import PAPER_MODELS, Config
from rhcloud.stages import catalog
from rhcloud.world.generate import _catalog_json

LISTING = Path(__file__).resolve().parents[3] / "shared" / "data" / "pangeo-catalog" / \
    "gs-cmip6-listing-2020-06-rh-npp-fx.csv"


@pytest.fixture(scope="module")
def world_df(small_world) -> pd.DataFrame:
    return catalog.open_catalog(str(small_world / "local-cmip6.json")).df


@pytest.fixture(scope="module")
def listing_df(tmp_path_factory) -> pd.DataFrame:
    """The real listing opened through intake-esm, as a user's catalog would be."""
    assert LISTING.exists(), f"shared data missing: {LISTING}"
    path = tmp_path_factory.mktemp("listing") / "listing.json"
    path.write_text(json.dumps(_catalog_json(str(LISTING), "Pangeo CMIP6 listing, 2020-06")))
    return catalog.open_catalog(str(path)).df


def _members(sel: pd.DataFrame, model: str, var: str = "rh") -> list[str]:
    return sorted(sel[(sel.source_id == model) & (sel.variable_id == var)].member_id)


def test_member_key_orders_numerically():
    labels = ["r10i1p1f1", "r2i1p1f1", "r1i1p1f2", "r1i1p1f1", "r1i2p1f1", "bogus"]
    assert sorted(labels, key=catalog.member_key) == [
        "r1i1p1f1", "r1i1p1f2", "r1i2p1f1", "r2i1p1f1", "r10i1p1f1", "bogus"]


def test_first_member_policy(world_df):
    sel, _ = catalog.select(world_df, Config(members="first"))
    assert len(sel) == 2 * 13  # rh and npp for each of the paper's models
    assert _members(sel, "CESM2") == ["r1i1p1f1"]  # not r10 (lexical order would pick it)
    for model in ("CNRM-ESM2-1", "MIROC-ES2L", "UKESM1-0-LL"):
        assert _members(sel, model) == ["r1i1p1f2"]


def test_all_and_explicit_member_policies(world_df):
    sel_all, _ = catalog.select(world_df, Config(members="all"))
    assert _members(sel_all, "CESM2") == ["r10i1p1f1", "r11i1p1f1", "r1i1p1f1", "r2i1p1f1"]
    assert len(sel_all[sel_all.variable_id == "rh"]) == 21
    sel_list, _ = catalog.select(world_df, Config(members=["r2i1p1f1"]))
    assert sorted(sel_list[sel_list.variable_id == "rh"].source_id) == [
        "CESM2", "CanESM5", "IPSL-CM6A-LR"]
    missing = dict(catalog.missing_models(sel_list, Config(members=["r2i1p1f1"])))
    assert "BCC-ESM1" in missing and "r2i1p1f1" in missing["BCC-ESM1"]


def test_newest_version_kept(world_df):
    sel, superseded = catalog.select(world_df, Config(members="first", variables=["rh"]))
    miroc = sel[sel.source_id == "MIROC-ES2L"]
    assert list(miroc.version) == ["20190601"]
    assert list(superseded.version) == ["20190301"]


def test_fx_matching_quirks(world_df):
    sel, _ = catalog.select(world_df, Config(members="first", variables=["rh"]))
    by = sel.set_index("source_id")
    ukesm = by.loc["UKESM1-0-LL"]
    assert "/piControl/" in ukesm.areacella_zstore and "/piControl/" in ukesm.sftlf_zstore
    assert "from piControl" in ukesm.fx_note
    bcc = by.loc["BCC-CSM2-MR"]
    assert pd.isna(bcc.areacella_zstore) and "areas from cell bounds" in bcc.fx_note
    ipsl = by.loc["IPSL-CM6A-LR"]
    assert "/historical/" in ipsl.areacella_zstore and ipsl.fx_note == ""


def test_query_that_finds_nothing_lists_what_exists(world_df):
    with pytest.raises(catalog.CatalogError, match="models present: .*CanESM5"):
        catalog.select(world_df, Config(models=["NoSuchModel"]))
    with pytest.raises(catalog.CatalogError, match="experiments: .*historical"):
        catalog.select(world_df, Config(experiment="ssp585"))
    with pytest.raises(catalog.CatalogError, match="members present"):
        catalog.select(world_df, Config(members=["r99i1p1f1"]))


def test_version_from_path_when_column_absent():
    df = pd.DataFrame({"zstore": ["gs://cmip6/a/v20200101/", "gs://cmip6/a/v20190101/",
                                  "gs://cmip6/b/"]})
    assert list(catalog.with_versions(df).version) == ["20200101", "20190101", ""]


def test_real_listing_first_members(listing_df):
    sel, _ = catalog.select(listing_df, Config(members="first", variables=["rh"]))
    firsts = dict(zip(sel.source_id, sel.member_id, strict=True))
    assert firsts["CNRM-ESM2-1"] == "r1i1p1f2"
    assert firsts["MIROC-ES2L"] == "r1i1p1f2"
    assert firsts["UKESM1-0-LL"] == "r1i1p1f2"
    assert firsts["CESM2"] == "r1i1p1f1"
    assert firsts["CanESM5"] == "r1i1p1f1"
    # the 2020 bucket lacks rh for four of the paper's models: named, not silently dropped
    missing = {m for m, _ in catalog.missing_models(sel, Config(members="first",
                                                                variables=["rh"]))}
    assert missing == set(PAPER_MODELS) - set(sel.source_id)
    assert "E3SM-1-1-ECA" in missing


def test_real_listing_fx(listing_df):
    sel, _ = catalog.select(listing_df, Config(members="first", variables=["rh"]))
    by = sel.set_index("source_id")
    assert "/piControl/" in by.loc["UKESM1-0-LL", "areacella_zstore"]
    assert "/piControl/" in by.loc["UKESM1-0-LL", "sftlf_zstore"]
    assert pd.isna(by.loc["BCC-CSM2-MR", "areacella_zstore"])
    assert "areas from cell bounds" in by.loc["BCC-CSM2-MR", "fx_note"]
    # historical fx preferred when present (IPSL publishes sftlf under many experiments)
    assert "/historical/" in by.loc["IPSL-CM6A-LR", "sftlf_zstore"]


def test_real_listing_all_members(listing_df):
    sel, _ = catalog.select(listing_df, Config(models="all", members="all", variables=["rh"]))
    assert len(sel) == 128
    assert sel.groupby("source_id").size()["CanESM5"] == 32
    assert sel.groupby("source_id").size()["IPSL-CM6A-LR"] == 31


def test_no_npp_in_real_listing_is_explained(listing_df):
    with pytest.raises(catalog.CatalogError, match="variables present: .*rh"):
        catalog.select(listing_df, Config(variables=["npp"]))


@pytest.mark.parametrize("policy,expected", [("first", 26), ("all", 42)])
def test_catalog_command_prints_selection(small_world, tmp_path, capsys, policy, expected):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"catalog: {small_world / 'local-cmip6.json'}\nmembers: {policy}\n")
    assert main(["catalog", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert f"{expected} datasets from 13 models" in out
    assert "r1i1p1f2" in out and "superseded" in out


# ---------------------------------------------------------------------------- issue 13


def _catalog_copy(small_world, tmp_path, mutate) -> Path:
    """A copy of the world's local catalog whose table went through ``mutate``."""
    df = mutate(pd.read_csv(small_world / "local-cmip6.csv"))
    df.to_csv(tmp_path / "cat.csv", index=False)
    spec = json.loads((small_world / "local-cmip6.json").read_text())
    spec["catalog_file"] = str(tmp_path / "cat.csv")
    (tmp_path / "cat.json").write_text(json.dumps(spec))
    return tmp_path / "cat.json"


@pytest.mark.parametrize("dropped", [["grid_label"], ["member_id", "grid_label"]])
def test_missing_required_column_is_one_clear_message(small_world, tmp_path, capsys, dropped):
    path = _catalog_copy(small_world, tmp_path, lambda df: df.drop(columns=dropped))
    with pytest.raises(catalog.CatalogError) as err:
        catalog.select_datasets(Config(catalog=str(path)))
    msg = str(err.value)
    assert f"lacks the required column{'s' if len(dropped) > 1 else ''} " \
           f"{', '.join(c for c in catalog.REQUIRED_COLUMNS if c in dropped)}" in msg
    assert "it has: activity_id, institution_id, source_id" in msg
    # the same from `rhcloud catalog`, as a message (exit 2), no traceback
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"catalog: {path}\n")
    assert main(["catalog", str(cfg)]) == 2
    captured = capsys.readouterr()
    assert "lacks the required column" in captured.err and "Traceback" not in captured.err


def test_rows_lacking_values_excluded_the_rest_goes_on(world_df, small_world, tmp_path):
    bad = world_df[(world_df.source_id == "CanESM5") & (world_df.variable_id == "rh")
                   & (world_df.member_id == "r2i1p1f1")].index[0]

    def mutate(df):
        df = df.copy()
        df.loc[df.zstore == world_df.at[bad, "zstore"], "member_id"] = None
        df["version"] = df["version"].astype("Int64")  # an odd dtype: integers
        return df

    path = _catalog_copy(small_world, tmp_path, mutate)
    cfg = Config(catalog=str(path), members="all")
    sel = catalog.select_datasets(cfg)
    assert [(e.zstore, e.reason, e.stage) for e in sel.excluded] == [
        (world_df.at[bad, "zstore"], "catalog row lacks member_id", "catalog")]
    want, _ = catalog.select(world_df, Config(members="all"))
    want = want[want.zstore != world_df.at[bad, "zstore"]]
    got = sel.datasets
    assert sorted(got.zstore) == sorted(want.zstore)
    assert set(got.version) == set(want.version)


def test_duplicate_rows_not_reported_superseded(world_df):
    doubled = pd.concat([world_df, world_df[world_df.source_id == "CanESM5"]],
                        ignore_index=True)
    sel, superseded = catalog.select(doubled, Config(members="all", variables=["rh"]))
    once, superseded_once = catalog.select(world_df, Config(members="all", variables=["rh"]))
    assert sorted(sel.zstore) == sorted(once.zstore)
    assert not set(superseded.zstore) & set(sel.zstore)
    assert sorted(superseded.zstore) == sorted(superseded_once.zstore)
