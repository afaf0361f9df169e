"""Issue 13 end to end, through the command line in a subprocess (as a user meets it): too
few datasets, credentials planted everywhere, the output checked before any work and owned
by the run, and Ctrl-C (SIGINT) while stores are opened, while climatologies compute and
while outputs are written — each ends promptly with a message and no traceback, and a rerun
resumes from the cache.

Kept small: three models of the small world, ``rh`` only, a regular 10° reference grid, no
covariates or NPP reference (so the drivers stage skips itself), one local worker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from rhcloud.testing.faultproxy import FaultProxy
from rhcloud.world.generate import truth_key

pytestmark = pytest.mark.slow

MODELS = ["BCC-ESM1", "CanESM5", "IPSL-CM6A-LR"]
RHCLOUD = str(Path(sys.executable).with_name("rhcloud"))
PROMPT_S = 10.0  # an interrupted run ends within this


def _config(small_world: Path, tmp: Path, **changes) -> Path:
    cfg = yaml.safe_load((small_world / "run.yaml").read_text())
    cfg.pop("covariates", None)
    cfg.pop("npp_reference", None)
    cfg.update(models=MODELS, members="all", variables=["rh"], reference_grid="regular:10",
               cluster={"kind": "local", "n_workers": 1}, **changes)
    path = tmp / f"run-{len(list(tmp.glob('run-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _gcs(gcs_world: str, endpoint: str | None = None, **changes) -> dict:
    return dict(catalog="gs://cmip6/pangeo-cmip6.json",
                storage_options={"token": "anon", "endpoint_url": endpoint or gcs_world},
                **changes)


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([RHCLOUD, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _no_traceback(*texts: str) -> None:
    for t in texts:
        assert "Traceback" not in t, t[-3000:]


def _n_rh(small_world: Path) -> int:
    df = pd.read_csv(small_world / "local-cmip6.csv")
    rows = df[df.source_id.isin(MODELS) & (df.variable_id == "rh")
              & (df.experiment_id == "historical")]
    return len(rows.drop_duplicates(["source_id", "member_id"]))


# ---------------------------------------------------------------------------- too few


@pytest.mark.parametrize("changes,why", [
    ({"period": [1950, 1951]}, "period 1950–1951 not covered"),
    ({"min_datasets": 1000}, None),
])
def test_too_few_datasets_writes_why_then_stops(small_world, tmp_path, changes, why):
    out = tmp_path / "out"
    p = _cli("run", str(_config(small_world, tmp_path, **changes)), "--output", str(out))
    _no_traceback(p.stdout, p.stderr)
    assert p.returncode == 2, p.stderr
    n = _n_rh(small_world)
    kept = 0 if why else n
    assert f"only {kept} of {n} selected datasets remain" in p.stderr
    assert "tables/excluded.csv and report.html" in p.stderr
    excluded = pd.read_csv(out / "tables" / "excluded.csv")
    report = (out / "report.html").read_text()
    assert "Why the run stopped" in report and f"only {kept} of {n}" in report
    if why:
        per_dataset = excluded[~excluded.zstore.str.endswith("(every member)")]
        assert len(per_dataset) == n and per_dataset.reason.str.contains(why).all()
        assert sorted(excluded.zstore[excluded.zstore.str.endswith("(every member)")]) == [
            f"{m} rh (every member)" for m in MODELS]
    else:
        assert excluded.empty
        assert (out / "cache").is_dir()  # what was computed is kept for the next try


# ---------------------------------------------------------------------------- secrets


def test_credentials_never_written_nor_printed(small_world, tmp_path):
    """A credential planted in each place a user may put one (storage_options and
    output_storage_options keys of s3fs, gcsfs, adlfs, http; userinfo in endpoint_url; an
    unknown option): the run succeeds (a local world reads no option) and none of them
    appears in any file under the output, nor in the printed summary and log. The output
    directory held an earlier run's files: the run removes them, and keeps the cache."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "storage"))
    from test_paths import PLANTED, planted_config

    planted = planted_config()
    planted.pop("catalog")  # the run reads the world's own (local) catalog
    out = tmp_path / "out"
    stale = ["provenance.json", "tables/gls_aic.csv", "tables/gamm_terms.csv",
             "figures/gamm_effects_median.png", "cache/unrelated-entry.json"]
    for rel in stale:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text("from an earlier run")
    p = _cli("run", str(_config(small_world, tmp_path, **planted)), "--output", str(out))
    _no_traceback(p.stdout, p.stderr)
    assert p.returncode == 0, p.stderr[-3000:]
    leaks = {}
    for f in [x for x in out.rglob("*") if x.is_file()]:
        data = f.read_bytes()
        hit = [k for k, v in PLANTED.items() if v.encode() in data]
        if hit:
            leaks[str(f.relative_to(out))] = hit
    for name, text in (("stdout", p.stdout), ("stderr", p.stderr)):
        hit = [k for k, v in PLANTED.items() if v in text]
        if hit:
            leaks[name] = hit
    assert leaks == {}
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["config"]["storage_options"]["key"] == "<redacted>"
    # the earlier run's files are gone, its cache kept; the run's own files are there
    assert not (out / "tables" / "gls_aic.csv").exists()
    assert not (out / "tables" / "gamm_terms.csv").exists()
    assert not (out / "figures" / "gamm_effects_median.png").exists()
    assert (out / "cache" / "unrelated-entry.json").exists()
    assert (out / "tables" / "global_totals.csv").exists()


# ---------------------------------------------------------------------------- outputs


def test_output_checked_before_any_work(small_world, tmp_path):
    cfg = str(_config(small_world, tmp_path))
    afile = tmp_path / "taken.txt"
    afile.write_text("mine")
    t0 = time.monotonic()
    p = _cli("run", cfg, "--output", str(afile))
    _no_traceback(p.stdout, p.stderr)
    assert p.returncode == 2 and "is an existing file, not a directory" in p.stderr
    assert "[rhcloud] catalog" not in p.stdout  # refused before the catalog stage
    assert afile.read_text() == "mine"
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    p = _cli("run", cfg, "--output", str(foreign))
    _no_traceback(p.stdout, p.stderr)
    assert p.returncode == 2 and "holds files no rhcloud run wrote (notes.txt)" in p.stderr
    assert sorted(x.name for x in foreign.iterdir()) == ["notes.txt"]
    assert time.monotonic() - t0 < 60


def test_object_storage_output_checked_before_any_work(small_world, gcs_world, tmp_path):
    """An object in the bucket where the output directory would be: refused at once."""
    import gcsfs

    fs = gcsfs.GCSFileSystem(token="anon", endpoint_url=gcs_world)
    fs.pipe("cmip6/robustness/afile", b"x")
    cfg = _config(small_world, tmp_path, output_storage_options={
        "token": "anon", "endpoint_url": gcs_world})
    p = _cli("run", str(cfg), "--output", "gs://cmip6/robustness/afile")
    _no_traceback(p.stdout, p.stderr)
    assert p.returncode == 2 and "is an existing file, not a directory" in p.stderr
    assert "[rhcloud] catalog" not in p.stdout


# ---------------------------------------------------------------------------- interrupts


class _Run:
    """``rhcloud run`` in a subprocess, its output lines collected as they come."""

    def __init__(self, cfg: Path, out: Path):
        self.lines: list[str] = []
        self.proc = subprocess.Popen([RHCLOUD, "run", str(cfg), "--output", str(out)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for(self, predicate, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail("the run ended or stalled before the moment to interrupt it:\n"
                            + "".join(self.lines)[-3000:])
            time.sleep(0.05)

    def saw(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def interrupt(self) -> float:
        """SIGINT (Ctrl-C); returns the seconds until the process ended."""
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail("still running 60 s after SIGINT:\n" + "".join(self.lines)[-3000:])
        self._reader.join(timeout=10)
        return time.monotonic() - t0

    @property
    def text(self) -> str:
        return "".join(self.lines)


def _entries(out: Path) -> int:
    return len(list((out / "cache").glob("*.json")))


def _resumed(small_world: Path, cfg: Path, out: Path, at_least: int) -> None:
    """A rerun completes, reading at least ``at_least`` climatologies from the cache, and
    its totals are the planted truth."""
    p = _cli("run", str(cfg), "--output", str(out))
    _no_traceback(p.stdout, p.stderr)
    assert p.returncode == 0, p.stderr[-3000:]
    n = _n_rh(small_world)
    cached = next((int(line.split("(")[1].split()[0]) for line in p.stdout.splitlines()
                   if line.startswith("[rhcloud] climatology:")), -1)
    assert at_least <= cached <= n, p.stdout
    truth = json.loads((small_world / "truth.json").read_text())
    prov = json.loads((out / "provenance.json").read_text())
    assert len(prov["datasets"]) == n
    for d in prov["datasets"]:
        want = truth["datasets"][truth_key(d["zstore"])]["total_PgC_yr"]
        assert float(d["land_total_PgC_yr"]) == pytest.approx(want, rel=1e-6)


def _assert_prompt(run: _Run, seconds: float) -> None:
    assert run.proc.returncode == 130, run.text[-3000:]
    assert seconds <= PROMPT_S, f"{seconds:.1f} s after SIGINT\n{run.text[-3000:]}"
    assert "interrupted" in run.text and "a rerun resumes" in run.text
    _no_traceback(run.text)


def test_interrupt_while_opening_stores(small_world, gcs_world, tmp_path):
    """Every store's consolidated metadata is held 30 s by the proxy: SIGINT while the
    stores are being opened ends the run within 10 s (the opening threads are not waited
    for), and a rerun through the undisturbed endpoint completes."""
    proxy = FaultProxy(gcs_world, fault="delay", fault_delay=30.0, fault_rate=1.0,
                       max_consecutive=None, match=lambda path: ".zmetadata" in path)
    out = tmp_path / "out"
    with proxy as url:
        cfg = _config(small_world, tmp_path, **_gcs(gcs_world, url))
        run = _Run(cfg, out)
        run.wait_for(lambda: run.saw("[rhcloud] cluster:")
                     and proxy.counts()["by_kind"].get("delay", 0) >= 3)
        seconds = run.interrupt()
    _assert_prompt(run, seconds)
    assert not run.saw("opened ")  # it was opening
    _resumed(small_world, _config(small_world, tmp_path, **_gcs(gcs_world)), out, 0)


def test_interrupt_while_computing(small_world, gcs_world, tmp_path):
    """Each data chunk is held 1 s by the proxy, so the climatologies take a while: SIGINT
    once the first are in the cache ends the run within 10 s, keeps them, and the rerun
    reads them from the cache."""
    proxy = FaultProxy(gcs_world, fault="delay", fault_delay=1.0, fault_rate=1.0,
                       max_consecutive=None,
                       match=lambda path: "/rh/" in path and ".z" not in path)
    out = tmp_path / "out"
    with proxy as url:
        cfg = _config(small_world, tmp_path, **_gcs(gcs_world, url))
        run = _Run(cfg, out)
        run.wait_for(lambda: _entries(out) >= 1)
        seconds = run.interrupt()
    _assert_prompt(run, seconds)
    assert not run.saw("[rhcloud] climatology:")  # still computing
    kept = _entries(out)
    assert 1 <= kept < _n_rh(small_world)
    _resumed(small_world, _config(small_world, tmp_path, **_gcs(gcs_world)), out, kept)


def test_interrupt_while_writing(small_world, tmp_path):
    out = tmp_path / "out"
    cfg = _config(small_world, tmp_path)
    run = _Run(cfg, out)
    run.wait_for(lambda: run.saw("[rhcloud] writing outputs"))
    seconds = run.interrupt()
    _assert_prompt(run, seconds)
    assert not run.saw("outputs written")
    n = _n_rh(small_world)
    assert _entries(out) == n
    _resumed(small_world, cfg, out, n)
