"""End to end through the real access path: an intake-esm catalog at a gs:// URL, stores read
by gcsfs from a local GCS emulator, climatologies computed on a Dask LocalCluster."""

from __future__ import annotations

import pytest

from rhcloud import run
from rhcloud.config import Config
from rhcloud.stages import catalog
from rhcloud.world.generate import truth_key

pytestmark = pytest.mark.slow


def test_gcs_path_matches_truth_and_local(gcs_world, small_config, truth, tmp_path):
    cfg = Config(catalog="gs://cmip6/pangeo-cmip6.json",
                 storage_options={"token": "anon", "endpoint_url": gcs_world},
                 period=(1990, 1991), members="all", output=str(tmp_path / "out"),
                 cluster={"kind": "local", "n_workers": 2})
    sel, _ = catalog.select(catalog.open_catalog(cfg.catalog, cfg.storage_options).df, cfg)
    assert sel.zstore.str.startswith("gs://cmip6/CMIP6/").all()
    result = run(cfg)
    assert result.excluded.empty
    assert len(result.collected.datasets) == len(sel) == 42
    local = run(Config(**{**small_config.to_dict(), "output": str(tmp_path / "l")}))
    local_totals = {(d["source_id"], d["member_id"], d["variable_id"]):
                    d["land_total_PgC_yr"] for d in local.collected.datasets}
    for a in result.collected.datasets:
        want = truth["datasets"][truth_key(a["zstore"])]["total_PgC_yr"]
        assert a["land_total_PgC_yr"] == pytest.approx(want, rel=1e-6)
        assert a["land_total_PgC_yr"] == local_totals[
            (a["source_id"], a["member_id"], a["variable_id"])]
    assert (tmp_path / "out" / "tables" / "global_totals.csv").exists()
