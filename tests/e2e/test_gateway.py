"""`rhcloud run` with `cluster: gateway` through a real dask-gateway server, against the GCS
emulator: same results as a LocalCluster, the cluster shut down afterwards, and the gateway
password (a planted secret) in no output."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from rhcloud.cli import main
from rhcloud.cluster import forget_closed_gateway

pytestmark = pytest.mark.slow


def _config(small_world, gcs_world, cluster, tmp_path, name):
    config = yaml.safe_load((small_world / "run.yaml").read_text())
    config.update(catalog="gs://cmip6/pangeo-cmip6.json", variables=["rh"],
                  storage_options={"token": "anon", "endpoint_url": gcs_world},
                  cluster=cluster, covariates={})
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_run_on_gateway(gateway, gcs_world, small_world, tmp_path, monkeypatch, capsys):
    address, proxy, password = gateway
    monkeypatch.setenv("RHCLOUD_GATEWAY_PASSWORD", password)
    cluster = {"kind": "gateway", "address": address, "proxy_address": proxy, "workers": 2,
               "auth": {"type": "basic", "username": "rhcloud",
                        "password_env": "RHCLOUD_GATEWAY_PASSWORD"}}
    cfg = _config(small_world, gcs_world, cluster, tmp_path, "gw")
    assert main(["run", str(cfg), "--output", str(tmp_path / "gw")]) == 0
    local = _config(small_world, gcs_world, {"kind": "local", "n_workers": 1}, tmp_path, "lc")
    assert main(["run", str(local), "--output", str(tmp_path / "lc")]) == 0
    printed = capsys.readouterr()
    a = pd.read_csv(tmp_path / "gw" / "tables" / "global_totals.csv")
    b = pd.read_csv(tmp_path / "lc" / "tables" / "global_totals.csv")
    pd.testing.assert_frame_equal(a, b)
    # the cluster the run started is gone
    from dask_gateway import Gateway
    from dask_gateway.auth import BasicAuth

    with Gateway(address, proxy_address=proxy, auth=BasicAuth("rhcloud", password)) as gw:
        assert gw.list_clusters() == []
    forget_closed_gateway(gw)
    # the secret is in no output, log or message
    for f in (tmp_path / "gw").rglob("*"):
        if f.is_file():
            assert password.encode() not in f.read_bytes(), f
    assert password not in printed.out + printed.err


def test_password_in_config_is_refused(small_world, gcs_world, tmp_path, capsys):
    cluster = {"kind": "gateway", "address": "http://127.0.0.1:9",
               "auth": {"type": "basic", "username": "u", "password": "in-the-config"}}
    cfg = _config(small_world, gcs_world, cluster, tmp_path, "bad")
    assert main(["run", str(cfg), "--output", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "password_env" in err and "in-the-config" not in err
