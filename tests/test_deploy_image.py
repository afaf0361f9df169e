"""deploy/Dockerfile on the newest Pangeo image: its tag is the one the resolver check
(`make check-pangeo-latest`) runs on, it adds exactly the requirements of rhcloud that image
lacks, and deploy/check_install.py names a requirement the image does not meet."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "deploy" / "Dockerfile").read_text()
TAG = re.search(r"^FROM pangeo/pangeo-notebook:(\S+)", DOCKERFILE, re.M).group(1)


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_the_image_is_the_one_the_resolver_check_runs_on():
    make = (ROOT / "Makefile").read_text()
    assert re.search(rf"^PANGEO_LATEST \?= {re.escape(TAG)}$", make, re.M)
    assert TAG == "2026.01.30"


def test_dockerfile_adds_what_the_image_lacks():
    packages = ROOT.parent / "shared" / "data" / "pangeo-notebook" / f"packages-{TAG}.txt"
    if not packages.is_file():
        pytest.skip("the Pangeo package lists live in ../shared")
    env = _load(ROOT / ".ci" / "pangeo_env.py", "pangeo_env_deploy")
    image, _ = env.read_image(packages)
    lacking = {str(r) for r in env.declared_requirements([])
               if env.canonicalize_name(r.name) not in image}
    added = set(re.findall(r'"([A-Za-z0-9._-]+[<>=!~][^"]*)"', DOCKERFILE))
    assert lacking and added == lacking


def test_check_install_names_unmet_requirements():
    check = _load(ROOT / "deploy" / "check_install.py", "check_install")
    assert check.unmet(["numpy>=2.0", "pytest>=8"]) == []
    got = check.unmet(["numpy<1", "no-such-package-rhcloud>=1", "pygam>=99; extra == 'x'"])
    assert len(got) == 2
    assert got[0].startswith("numpy<1 (installed: numpy 2.")
    assert got[1] == "no-such-package-rhcloud>=1 (not installed)"
    proc = subprocess.run([sys.executable, str(ROOT / "deploy" / "check_install.py")],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "every requirement met" in proc.stdout
