#!/usr/bin/env python3
"""A test environment with the stack of a ``pangeo/pangeo-notebook`` image, and the check
that installing rhcloud into it changes none of the image's packages.

    python .ci/pangeo_env.py --tag 2025.12.30 --venv .venv-pangeo            # build + verify
    python .ci/pangeo_env.py --tag 2026.01.30 --check-only                   # resolver only

The image's package list is ``packages-<tag>.txt`` (``--packages-dir``, default
``../shared/data/pangeo-notebook`` beside the project: one ``name==version`` a line, from the
image's conda lock). What is pinned: the image's version of every distribution rhcloud and
its tests import (an AST scan of ``rhcloud/`` and ``tests/``, ``pytest.importorskip``
included) and of every requirement rhcloud declares (``pyproject.toml``: dependencies and the
chosen extras) that the image holds. Every other package of the image is a constraint too,
so what pip pulls in besides (numcodecs, pyarrow, aiohttp, google-auth, ...) is the image's
version where the image has one. What the image lacks (pytest, pygam, xarray-regrid, ...)
comes from the registry.

Steps (the full run):
1. the check: each requirement of rhcloud against the pinned versions (a conflict is named
   at once: "rhcloud requires intake-esm>=2025.2; the image holds intake-esm 2023.11.10"),
   then pip's resolver (``--dry-run``) on rhcloud's requirements with the image's versions as
   constraints, which names conflicts that come through a dependency (pygam -> scipy<1.17);
2. a virtualenv with the image's Python (major.minor; pyenv's when not on PATH) and the
   pinned packages at the image's versions ("the image");
3. rhcloud installed on top (editable, with the extras), the image's versions as constraints;
4. the verification, with ``importlib.metadata`` inside the environment: every pinned
   package, and every installed package the image holds, at the image's version; the versions
   before and after step 3 compared. Any difference fails, naming the package.
``--check-only`` does step 1 alone, for the image's Python, without a virtualenv (pip's
``--python-version``; wheels only). ``--pin NAME==VERSION`` replaces the image's version of a
package (for the test that a conflicting pin fails). Exit status 0: the environment (or the
resolution) holds the image's versions; 1: a package would change (the message names it);
2: usage or setup errors.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import InvalidVersion, Version
except ImportError:  # a bare interpreter: pip's own copy
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name
    from pip._vendor.packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PACKAGES_DIR = ROOT.parent / "shared" / "data" / "pangeo-notebook"

# conda package -> the PyPI distribution it is (where the names differ beyond case and _/-)
CONDA_TO_PYPI = {"matplotlib-base": "matplotlib", "dask-core": "dask",
                 "msgpack-python": "msgpack", "pyarrow-core": "pyarrow", "pytables": "tables",
                 "pytorch": "torch"}
# never pinned: the interpreter and the installer (the venv brings its own)
NOT_PINNED = {"python", "pip"}
# in every conda Python but in no Python 3.12 venv: pinned with the image's version
# (intake-esm 2023.11.10 imports pkg_resources, from setuptools, without declaring it)
BASE = ("setuptools", "wheel")
# module imported -> distribution (where they differ beyond case and _/-)
IMPORT_TO_DIST = {"yaml": "pyyaml", "netCDF4": "netcdf4", "PIL": "pillow",
                  "sklearn": "scikit-learn", "skimage": "scikit-image", "cv2": "opencv-python",
                  "google": "google-cloud-storage", "dateutil": "python-dateutil"}
# imported by rhcloud only where a user asks for it, and not installable from PyPI
OPTIONAL_IMPORTS = {
    "xesmf": "needs ESMF's esmpy, which is on conda-forge only; rhcloud imports it only for "
             "regrid method 'xesmf'",
}


class Changed(Exception):
    """Installing rhcloud would change (or did change) a package of the image."""


# ------------------------------------------------------------------------ the image's list
def read_image(path: Path) -> tuple[dict[str, str], str]:
    """(PyPI name -> version) of the image's packages, and its Python's major.minor."""
    image: dict[str, str] = {}
    python = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "==" not in line:
            continue
        name, version = (s.strip() for s in line.split("==", 1))
        if name == "python":
            python = ".".join(version.split(".")[:2])
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            continue  # conda-only packages (_libgcc_mutex, ...)
        try:
            Version(version)
        except InvalidVersion:
            continue  # not a PEP 440 version: a conda-only package
        pypi = canonicalize_name(CONDA_TO_PYPI.get(name.lower(), name))
        if pypi in NOT_PINNED:
            continue
        if pypi in image and Version(image[pypi]) != Version(version):
            raise SystemExit(f"{path}: {name}=={version} contradicts {pypi}=={image[pypi]}")
        image[pypi] = version
    if python is None:
        raise SystemExit(f"{path}: no python==X.Y.Z line")
    return image, python


# ------------------------------------------------------------------------ what rhcloud needs
def imported_modules(dirs: list[Path]) -> set[str]:
    """Top-level modules imported in the .py files under ``dirs`` (not the stdlib, not the
    project's own modules), ``pytest.importorskip("x")`` included."""
    mods: set[str] = set()
    local: set[str] = set()
    for d in dirs:
        for p in d.rglob("*.py"):
            local.add(p.stem)
            for node in ast.walk(ast.parse(p.read_text(), str(p))):
                if isinstance(node, ast.Import):
                    mods |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    mods.add(node.module.split(".")[0])
                elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None)
                      == "importorskip" and node.args
                      and isinstance(node.args[0], ast.Constant)):
                    mods.add(str(node.args[0].value).split(".")[0])
    return {m for m in mods if m not in sys.stdlib_module_names and m not in local
            and m != "rhcloud"}


def declared_requirements(extras: list[str]) -> list[Requirement]:
    """rhcloud's requirements (pyproject.toml) with ``extras`` (self-references expanded)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional = project.get("optional-dependencies", {})
    name = canonicalize_name(project["name"])
    out: list[Requirement] = []
    todo, seen = list(extras), set()
    reqs = [Requirement(r) for r in project["dependencies"]]
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        if extra not in optional:
            raise SystemExit(f"pyproject.toml has no extra {extra!r} (has {sorted(optional)})")
        seen.add(extra)
        for r in map(Requirement, optional[extra]):
            if canonicalize_name(r.name) == name:
                todo.extend(r.extras)
            else:
                reqs.append(r)
    for r in reqs:
        if r.marker is None or r.marker.evaluate({"extra": ""}):
            out.append(r)
    return out


def pinned_packages(image: dict[str, str], reqs: list[Requirement]) -> tuple[dict, dict]:
    """(pinned: dist -> image version, from_registry: dist -> why) for what rhcloud and its
    tests import and what rhcloud declares."""
    wanted: dict[str, str] = {}
    for mod in sorted(imported_modules([ROOT / "rhcloud", ROOT / "tests"])):
        if mod in OPTIONAL_IMPORTS:
            continue
        wanted.setdefault(canonicalize_name(IMPORT_TO_DIST.get(mod, mod)), f"import {mod}")
    for r in reqs:
        wanted.setdefault(canonicalize_name(r.name), f"requirement {r}")
    for b in BASE:
        wanted.setdefault(b, "in every conda Python")
    pinned = {d: image[d] for d in sorted(wanted) if d in image}
    registry = {d: why for d, why in sorted(wanted.items()) if d not in image}
    return pinned, registry


# ------------------------------------------------------------------------ the check
def direct_conflicts(reqs: list[Requirement], pins: dict[str, str]) -> list[str]:
    """rhcloud's own requirements that the pinned versions do not satisfy."""
    out = []
    for r in reqs:
        v = pins.get(canonicalize_name(r.name))
        if v is not None and not r.specifier.contains(v, prereleases=True):
            out.append(f"rhcloud requires {r}; the image holds {r.name} {v}: installing "
                       f"rhcloud would change {r.name}")
    return out


def resolver_conflicts(pip_output: str) -> tuple[dict[str, dict], list[str]]:
    """What pip names in a failed resolution ("The conflict is caused by: ... pygam 0.12.0
    depends on scipy<1.17 ... The user requested (constraint) scipy==1.17.0"): for each
    constrained package, its constrained version and the (package, version, requirement) that
    depend on it; and the block's lines."""
    block = pip_output.split("The conflict is caused by:", 1)
    if len(block) < 2:
        return {}, []
    lines = [s.strip() for s in block[1].split("\n\n", 1)[0].splitlines() if s.strip()]
    found: dict[str, dict] = {}
    for s in lines:
        m = re.match(r"The user requested \(constraint\) ([A-Za-z0-9._-]+)==(\S+)", s)
        if m:
            found[canonicalize_name(m.group(1))] = {"version": m.group(2), "dependents": []}
    for s in lines:
        m = re.match(r"([A-Za-z0-9._-]+) (\S+) depends on ([A-Za-z0-9._-]+)(.*)", s)
        if m and canonicalize_name(m.group(3)) in found:
            found[canonicalize_name(m.group(3))]["dependents"].append(
                (canonicalize_name(m.group(1)), m.group(2), m.group(3) + m.group(4)))
    return found, lines


def transitive_constraints(image: dict[str, str], pins: dict[str, str]) -> dict[str, str]:
    """The image's versions as constraints: every pin, and the image's other packages where
    the version is a plain release (conda's data packages, e.g. tzdata 2025c, are numbered
    differently on PyPI)."""
    plain = re.compile(r"\d+(\.\d+)*(\.post\d+)?")
    return {k: v for k, v in image.items() if k in pins or plain.fullmatch(v)}


def pip_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    return env


def _pip_dry_run(python: list[str], args: list[str], target_python: str | None,
                 tmp: Path) -> tuple[subprocess.CompletedProcess, Path]:
    report = tmp / "report.json"
    cmd = [*python, "-m", "pip", "install", "--dry-run", "--ignore-installed",
           "--report", str(report), *args]
    if target_python:  # resolve for another interpreter: wheels only, into nowhere
        cmd += ["--python-version", target_python, "--only-binary=:all:",
                "--target", str(tmp / "target")]
    return subprocess.run(cmd, capture_output=True, text=True, env=pip_env()), report


def requires_of(python: list[str], name: str, version: str, target_python: str | None,
                tmp: Path) -> list[Requirement]:
    """The requirements ``name==version`` declares (its metadata on the registry)."""
    proc, report = _pip_dry_run(python, ["--no-deps", "--ignore-requires-python",
                                         f"{name}=={version}"], target_python, tmp)
    if proc.returncode != 0:
        raise Changed(f"cannot read the metadata of {name}=={version}:\n{proc.stderr[-2000:]}")
    item = json.loads(report.read_text())["install"][0]["metadata"]
    out = []
    for r in map(Requirement, item.get("requires_dist", [])):
        if r.marker is None or r.marker.evaluate({"extra": "",
                                                  "python_version": target_python
                                                  or "{}.{}".format(*sys.version_info[:2])}):
            out.append(r)
    return out


def _allows(spec: str, name: str, version: str) -> bool:
    """Whether pip's "xarray<2025.12 and >=2024.7.0" allows ``version``."""
    try:
        req = Requirement(name + spec[len(name):].replace(" and ", ","))
    except Exception:  # unreadable: count it as excluding
        return False
    return req.specifier.contains(version, prereleases=True)


@dataclasses.dataclass
class Resolution:
    """pip's resolution of rhcloud's requirements under the image's versions."""

    got: dict[str, str]  # what pip would install: name -> version
    constraints: dict[str, str]  # the constraints it held under
    reqs: list[Requirement]  # the requirements resolved (as-in-the-image packages replaced)
    as_in_image: dict[str, str]  # image package -> why it is installed without its deps


def resolve(python: list[str], reqs: list[Requirement], constraints: dict[str, str],
            pins: dict[str, str], target_python: str | None,
            max_rounds: int = 10) -> Resolution:
    """pip's resolution (``--dry-run``) of ``reqs`` under ``constraints``.

    A conflict on a pinned package raises Changed, naming it, with one exception: where
    every package that pip says cannot take the image's version is itself one of the image's
    packages at the image's version and one of rhcloud's requirements (the image's own pair
    disagrees under the registry's metadata, e.g. rioxarray 0.21.0 declares xarray<2025.12
    while the image holds both it and xarray 2025.12.0: conda-forge's metadata allows it),
    that package is kept as in the image: rhcloud's requirement on it is checked against the
    image's version, it is installed without its dependencies, and its other requirements are
    resolved in its place; what pip check then says about it is reported, not hidden. A
    constraint on a package that is not pinned and that pip cannot meet (a conda build
    numbered differently from PyPI's) is dropped, said, and the resolution rerun."""
    conflicts = direct_conflicts(reqs, pins)
    if conflicts:
        raise Changed("\n".join(conflicts))
    constraints = dict(constraints)
    reqs = list(reqs)
    as_in_image: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        req_file, con_file = tmp / "requirements.txt", tmp / "constraints.txt"
        for _ in range(max_rounds + 1):
            req_file.write_text("".join(f"{r}\n" for r in reqs))
            con_file.write_text("".join(f"{k}=={v}\n" for k, v in sorted(constraints.items())))
            proc, report = _pip_dry_run(python, ["-c", str(con_file), "-r", str(req_file)],
                                        target_python, tmp)
            if proc.returncode == 0:
                break
            text = proc.stdout + proc.stderr
            found, lines = resolver_conflicts(text)
            pinned = {k: v for k, v in found.items() if k in pins}
            for x, v in pinned.items():  # only those that exclude the image's version
                v["dependents"] = [d for d in v["dependents"]
                                   if not _allows(d[2], x, v["version"])]
            direct = {canonicalize_name(r.name) for r in reqs}
            internal = {k: v for k, v in pinned.items() if v["dependents"] and all(
                p in pins and Version(pins[p]) == Version(ver) and p in direct
                for p, ver, _ in v["dependents"])}
            if pinned and len(internal) == len(pinned):
                for x, v in internal.items():
                    for p, ver, spec in v["dependents"]:
                        if p in as_in_image:
                            continue
                        why = (f"{p} {ver} declares {spec} on the registry; the image holds "
                               f"{p} {ver} with {x} {v['version']}")
                        print(f"[pangeo-env] the image's own packages disagree under PyPI's "
                              f"metadata: {why}. {p} is installed as in the image (without "
                              "its dependencies; its other requirements resolved)", flush=True)
                        as_in_image[p] = why
                        own = [r for r in requires_of(python, p, ver, target_python, tmp)
                               if canonicalize_name(r.name) != x]
                        reqs = [r for r in reqs if canonicalize_name(r.name) != p] + own
                continue
            if pinned:
                named = []
                for x, v in pinned.items():
                    why = [ln for ln in lines if not ln.startswith("The user requested (constr")
                           and re.search(rf"(depends on|requested) {re.escape(x)}\b", ln, re.I)]
                    named.append(f"installing rhcloud would change {x} (the image holds "
                                 f"{v['version']}): " + "; ".join(why))
                raise Changed("\n".join(named))
            if found:
                for k in sorted(found):
                    print(f"[pangeo-env] the image's {k} {constraints.pop(k)} cannot be met "
                          "from the registry (not one of rhcloud's packages): left to the "
                          "resolver", flush=True)
                continue
            tail = "\n".join(ln for ln in text.splitlines() if "ERROR" in ln)
            raise Changed(f"pip cannot resolve rhcloud's requirements:\n{tail}")
        else:
            raise Changed(f"pip still cannot resolve after {max_rounds} rounds")
        got = {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"]
               for i in json.loads(report.read_text())["install"]}
    got.update({p: pins[p] for p in as_in_image})
    moved = {k: (v, got[k]) for k, v in pins.items() if k in got and
             Version(got[k]) != Version(v)}
    if moved:
        raise Changed("\n".join(f"installing rhcloud would change {k}: {a} -> {b}"
                                for k, (a, b) in moved.items()))
    return Resolution(got, constraints, reqs, as_in_image)


# ------------------------------------------------------------------------ the environment
def find_python(version: str) -> list[str]:
    """An interpreter of ``version`` (X.Y): ``pythonX.Y`` on PATH, else pyenv's."""
    exe = shutil.which(f"python{version}")
    env = dict(os.environ)
    if exe and subprocess.run([exe, "-V"], capture_output=True).returncode == 0:
        return [exe]
    pyenv = shutil.which("pyenv")
    if pyenv:
        versions = subprocess.run([pyenv, "versions", "--bare"], capture_output=True,
                                  text=True).stdout.split()
        match = sorted((v for v in versions if re.fullmatch(rf"{re.escape(version)}\.\d+", v)),
                       key=Version)
        if match:
            env["PYENV_VERSION"] = match[-1]
            root = subprocess.run([pyenv, "root"], capture_output=True, text=True).stdout.strip()
            exe = Path(root) / "versions" / match[-1] / "bin" / f"python{version}"
            if exe.exists():
                return [str(exe)]
    raise SystemExit(f"no Python {version} found (pythonX.Y on PATH or a pyenv version); "
                     "give one with --python")


_VERIFY = """
import json, re
from importlib.metadata import distributions
print(json.dumps({re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower(): d.version
                  for d in distributions()}))
"""


def installed(venv_python: str) -> dict[str, str]:
    out = subprocess.run([venv_python, "-c", _VERIFY], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out)


def verify(now: dict[str, str], before: dict[str, str], pins: dict[str, str],
           image: dict[str, str]) -> list[str]:
    """What is not at the image's version, or moved with rhcloud's install. ``image``: the
    versions held as constraints (those pip could meet)."""
    problems = []
    for k, v in pins.items():
        if k not in now:
            problems.append(f"{k} {v} (pinned from the image) is not installed")
        elif Version(now[k]) != Version(v):
            problems.append(f"{k} is {now[k]}, the image holds {v}")
    for k, v in now.items():
        if k in image and k not in pins and Version(v) != Version(image[k]):
            problems.append(f"{k} is {v}, the image holds {image[k]}")
    for k, v in before.items():
        if k in now and now[k] != v:
            problems.append(f"installing rhcloud changed {k}: {v} -> {now[k]}")
        elif k not in now:
            problems.append(f"installing rhcloud removed {k} {v}")
    return problems


def run(cmd: list[str], **kw) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=pip_env(), **kw)


def build(args, image, python_version, reqs, pins, registry, constraints) -> dict:
    python = [args.python] if args.python else find_python(python_version)
    venv = Path(args.venv).resolve()
    if venv.exists():
        shutil.rmtree(venv)
    run([*python, "-m", "venv", str(venv)])
    vpy = str(venv / "bin" / "python")
    got_version = subprocess.run([vpy, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                 capture_output=True, text=True, check=True).stdout.strip()
    if got_version != python_version:
        raise SystemExit(f"{python[0]} is Python {got_version}; the image runs {python_version}")
    run([vpy, "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    print(f"[pangeo-env] resolving rhcloud against the image's {len(pins)} pinned packages",
          flush=True)
    res = resolve([vpy], reqs, constraints, pins, None)
    con_file = venv / "pangeo-constraints.txt"
    con_file.write_text("".join(f"{k}=={v}\n" for k, v in sorted(res.constraints.items())))
    # the image: its versions of what rhcloud and its tests use
    run([vpy, "-m", "pip", "install", "--quiet", "-c", str(con_file),
         *(f"{k}=={v}" for k, v in pins.items() if k not in res.as_in_image)])
    if res.as_in_image:
        run([vpy, "-m", "pip", "install", "--quiet", "--no-deps",
             *(f"{k}=={pins[k]}" for k in res.as_in_image)])
    before = installed(vpy)
    (venv / "pangeo-before.json").write_text(json.dumps(before, indent=1))
    (venv / "pangeo-as-in-image.json").write_text(json.dumps(res.as_in_image, indent=1))
    # rhcloud on top, nothing of the image allowed to move
    spec = f"{ROOT}[{','.join(args.extras)}]" if args.extras else str(ROOT)
    if res.as_in_image:  # its requirements as resolved, then rhcloud itself
        req_file = venv / "pangeo-requirements.txt"
        req_file.write_text("".join(f"{r}\n" for r in res.reqs))
        run([vpy, "-m", "pip", "install", "--quiet", "-c", str(con_file), "-r", str(req_file)])
        run([vpy, "-m", "pip", "install", "--quiet", "--no-deps", "-e", spec])
    else:
        run([vpy, "-m", "pip", "install", "--quiet", "-c", str(con_file), "-e", spec])
    return verify_env(args, venv, image, pins, registry)


def verify_env(args, venv: Path, image: dict[str, str], pins: dict[str, str],
               registry: dict[str, str]) -> dict:
    """Step 4 on a built environment: its packages against the image's versions (the
    constraints it was built under) and against the versions before rhcloud's install, and
    pip check. Writes ``pangeo-env.json`` when all holds."""
    vpy = str(venv / "bin" / "python")
    files = {n: venv / f"pangeo-{n}" for n in ("constraints.txt", "before.json",
                                                "as-in-image.json")}
    missing = [str(f) for f in files.values() if not f.is_file()]
    if missing:
        raise SystemExit(f"{venv} was not built by this script (missing {missing})")
    constraints = dict(ln.split("==", 1) for ln in
                       files["constraints.txt"].read_text().split())
    before = json.loads(files["before.json"].read_text())
    as_in_image = json.loads(files["as-in-image.json"].read_text())
    now = installed(vpy)
    problems = verify(now, {k: v for k, v in before.items() if k in image}, pins, constraints)
    check = subprocess.run([vpy, "-m", "pip", "check"], capture_output=True, text=True)
    unexplained = [] if check.returncode == 0 else [
        ln for ln in check.stdout.splitlines()
        if ln.strip() and canonicalize_name(ln.split()[0]) not in as_in_image]
    if unexplained:
        problems.append("pip check: " + "; ".join(unexplained))
    if problems:
        raise Changed("\n".join(problems))
    record = {"tag": args.tag, "python": ".".join(
                  subprocess.run([vpy, "-c", "import sys; print(sys.version.split()[0])"],
                                 capture_output=True, text=True).stdout.split(".")[:2]),
              "pinned": pins, "from_registry": {k: now.get(k, "?") for k in registry},
              "as_in_image": as_in_image, "pip_check": check.stdout.strip(),
              "packages_file": str(args.packages)}
    (venv / "pangeo-env.json").write_text(json.dumps(record, indent=2))
    return record


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tag", default="2025.12.30", help="pangeo-notebook image tag")
    ap.add_argument("--packages", type=Path, default=None,
                    help="the image's package list (default: <packages-dir>/packages-<tag>.txt)")
    ap.add_argument("--packages-dir", type=Path, default=DEFAULT_PACKAGES_DIR)
    ap.add_argument("--venv", default=None, help="where to build (default .venv-pangeo-<tag>)")
    ap.add_argument("--python", default=None, help="interpreter (default: the image's X.Y)")
    ap.add_argument("--extras", default="test,pygam",
                    help="rhcloud extras to install, comma-separated ('' for none)")
    ap.add_argument("--check-only", action="store_true",
                    help="resolve only (no virtualenv): would rhcloud change the image?")
    ap.add_argument("--verify-only", action="store_true",
                    help="step 4 alone, on an environment this script built (--venv)")
    ap.add_argument("--pin", action="append", default=[], metavar="NAME==VERSION",
                    help="replace the image's version of a package")
    args = ap.parse_args(argv)
    args.extras = [e for e in args.extras.split(",") if e]
    args.packages = args.packages or args.packages_dir / f"packages-{args.tag}.txt"
    args.venv = args.venv or str(ROOT / f".venv-pangeo-{args.tag}")
    if not args.packages.is_file():
        print(f"[pangeo-env] no package list {args.packages}", file=sys.stderr)
        return 2
    image, python_version = read_image(args.packages)
    for p in args.pin:
        name, _, version = p.partition("==")
        if not version:
            print(f"[pangeo-env] --pin wants NAME==VERSION, got {p!r}", file=sys.stderr)
            return 2
        image[canonicalize_name(name)] = version
    reqs = declared_requirements(args.extras)
    pins, registry = pinned_packages(image, reqs)
    print(f"[pangeo-env] pangeo-notebook:{args.tag}, Python {python_version}: "
          f"{len(pins)} packages pinned at the image's versions "
          f"({', '.join(f'{k}=={v}' for k, v in pins.items())}); "
          f"from the registry: {', '.join(registry) or 'none'}", flush=True)
    constraints = transitive_constraints(image, pins)
    try:
        if args.check_only:
            got = resolve([sys.executable], reqs, constraints, pins, python_version).got
            same = sorted(k for k in got if k in image and Version(got[k]) == Version(image[k]))
            other = sorted(f"{k} {got[k]} (image {image[k]})" for k in got
                           if k in image and k not in same)
            print(f"[pangeo-env] OK: rhcloud resolves into pangeo-notebook:{args.tag} changing "
                  f"none of the {len(pins)} pinned packages ("
                  + ", ".join(f"{k}=={got[k]}" for k in ("numpy", "scipy", "intake-esm")
                              if k in got)
                  + f"); of the {len(got)} packages it would install, {len(same)} at the "
                  f"image's versions, {len(got) - len(same) - len(other)} not in the image"
                  + (f", not at the image's version: {', '.join(other)}" if other else ""))
            return 0
        if args.verify_only:
            record = verify_env(args, Path(args.venv).resolve(), image, pins, registry)
        else:
            record = build(args, image, python_version, reqs, pins, registry, constraints)
    except Changed as exc:
        print(f"[pangeo-env] FAILED for pangeo-notebook:{args.tag}:\n{exc}", file=sys.stderr)
        return 1
    print(f"[pangeo-env] OK: {args.venv} holds the {len(record['pinned'])} pinned packages at "
          f"pangeo-notebook:{args.tag}'s versions; rhcloud installed on top changed none",
          flush=True)
    return 0

if __name__ == "__main__":
    sys.exit(main())
