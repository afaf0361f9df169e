"""The Pangeo-image environment check (.ci/pangeo_env.py): what it pins from the image's
package list, and that it fails, naming the package, when installing rhcloud would change
one of the image's packages (a pin made to conflict, directly and through a dependency); and
that rhcloud resolves into the newest image (2026.01.30) without changing its scipy 1.17.0.
The resolver tests ask the package registry (pip --dry-run) and are marked slow."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".ci" / "pangeo_env.py"
PACKAGES = ROOT.parent / "shared" / "data" / "pangeo-notebook"

pytestmark = pytest.mark.skipif(not (PACKAGES / "packages-2025.12.30.txt").is_file(),
                                reason="the Pangeo package lists live in ../shared")


@pytest.fixture(scope="module")
def env():
    spec = importlib.util.spec_from_file_location("pangeo_env", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["pangeo_env"] = mod
    spec.loader.exec_module(mod)
    return mod


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True,
                          text=True, timeout=900)


def test_image_list_read_with_pypi_names(env):
    image, python = env.read_image(PACKAGES / "packages-2025.12.30.txt")
    assert python == "3.12"
    assert image["intake-esm"] == "2023.11.10" and image["scipy"] == "1.16.3"
    assert image["dask"] == "2025.12.0"  # dask-core and dask: one distribution
    assert image["matplotlib"] == "3.10.8"  # conda's matplotlib-base
    assert "python" not in image and "pip" not in image
    assert not any(k.startswith("_") for k in image)  # conda-only (_libgcc_mutex, ...)
    newest, python = env.read_image(PACKAGES / "packages-2026.01.30.txt")
    assert python == "3.12" and newest["scipy"] == "1.17.0"


def test_pins_cover_what_rhcloud_and_its_tests_import(env):
    image, _ = env.read_image(PACKAGES / "packages-2025.12.30.txt")
    reqs = env.declared_requirements(["test", "pygam"])
    pins, registry = env.pinned_packages(image, reqs)
    imported = env.imported_modules([ROOT / "rhcloud", ROOT / "tests"])
    assert {"numpy", "xarray", "zarr", "gcsfs", "intake_esm", "pytest", "pygam"} <= imported
    assert "drivers_helpers" not in imported and "rhcloud" not in imported
    for dist in ("numpy", "scipy", "xarray", "dask", "distributed", "zarr", "gcsfs",
                 "fsspec", "intake-esm", "pandas", "statsmodels", "cftime", "pyyaml",
                 "netcdf4", "h5netcdf", "rioxarray", "flox", "cf-xarray", "matplotlib"):
        assert pins[dist] == image[dist], dist
    # not in the image: from the registry
    assert {"pytest", "pygam", "xarray-regrid", "global-land-mask"} <= set(registry)
    assert "xesmf" not in pins  # needs conda's esmpy: rhcloud imports it only on request


def test_a_direct_conflict_names_the_package(env):
    image, _ = env.read_image(PACKAGES / "packages-2025.12.30.txt")
    reqs = env.declared_requirements([])
    pins, _ = env.pinned_packages({**image, "numpy": "1.26.4"}, reqs)
    msgs = env.direct_conflicts(reqs, pins)
    assert len(msgs) == 1 and "numpy>=2.0" in msgs[0] and "numpy 1.26.4" in msgs[0]
    assert env.direct_conflicts(reqs, env.pinned_packages(image, reqs)[0]) == []


def test_script_fails_on_a_conflicting_pin(tmp_path):
    """A package list whose numpy conflicts with rhcloud's numpy>=2.0: exit status 1 and a
    message naming numpy, before anything is installed."""
    text = (PACKAGES / "packages-2025.12.30.txt").read_text()
    assert "\nnumpy==2.3.5\n" in text
    bad = tmp_path / "packages-conflict.txt"
    bad.write_text(text.replace("\nnumpy==2.3.5\n", "\nnumpy==1.26.4\n"))
    proc = _run("--packages", str(bad), "--check-only", "--venv", str(tmp_path / "v"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "rhcloud requires numpy>=2.0; the image holds numpy 1.26.4" in proc.stderr
    assert not (tmp_path / "v").exists()


@pytest.mark.slow
def test_conflict_through_a_dependency_names_the_package(tmp_path):
    """The 2025.12.30 list with scipy pinned to 1.17.0 and the pygam extra (pygam 0.12 pins
    scipy<1.17): pip's resolver finds the conflict and the script names scipy and pygam."""
    text = (PACKAGES / "packages-2025.12.30.txt").read_text()
    bad = tmp_path / "packages-conflict.txt"
    bad.write_text(text.replace("\nscipy==1.16.3\n", "\nscipy==1.17.0\n"))
    proc = _run("--packages", str(bad), "--check-only", "--extras", "pygam")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "installing rhcloud would change scipy (the image holds 1.17.0)" in proc.stderr
    assert "pygam" in proc.stderr and "scipy<1.17" in proc.stderr


@pytest.mark.slow
def test_rhcloud_resolves_into_the_newest_image_keeping_its_scipy():
    proc = _run("--tag", "2026.01.30", "--check-only", "--extras", "test")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "changing none of the" in proc.stdout
    assert "scipy==1.17.0" in proc.stdout and "intake-esm==2025.12.12" in proc.stdout
