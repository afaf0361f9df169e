"""Run in the image after ``pip install --no-deps rhcloud``: every requirement rhcloud
declares is met by what the image holds, or the build fails naming the unmet ones.

(rhcloud goes into the image without re-resolving the image's own packages: pip's resolver
would read rioxarray 0.21.0's PyPI metadata, which caps xarray<2025.12, while
pangeo-notebook:2026.01.30 pairs it with xarray 2025.12.0; this check is what remains of
the resolution: rhcloud's own requirements against the installed versions.)
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, requires, version

try:
    from packaging.requirements import Requirement
except ImportError:  # pip's own copy
    from pip._vendor.packaging.requirements import Requirement


def unmet(requirements: list[str]) -> list[str]:
    """The requirements (PEP 508 strings, extras' ones skipped) not met by what is
    installed, each with what is installed instead."""
    out = []
    for text in requirements:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        try:
            have = version(req.name)
        except PackageNotFoundError:
            out.append(f"{req} (not installed)")
            continue
        if not req.specifier.contains(have, prereleases=True):
            out.append(f"{req} (installed: {req.name} {have})")
    return out


def main() -> int:
    missing = unmet(requires("rhcloud") or [])
    if missing:
        print("rhcloud's requirements not met by the image:\n  " + "\n  ".join(missing),
              file=sys.stderr)
        return 1
    print(f"rhcloud {version('rhcloud')}: every requirement met by the image's packages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
