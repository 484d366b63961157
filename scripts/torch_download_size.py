"""How much `pip install torch==X` downloads on each platform: torch and every dependency pip would pick.

    python scripts/torch_download_size.py --torch 2.13.0

For each platform, uv resolves the install from PyPI (`uv pip compile --python-platform`) and the size of the
wheel pip would pick for each pinned package (the best tag for a glibc 2.35 Linux or macOS 14) is read from
PyPI's JSON index (PEP 691). The README's set-up section quotes this script's table. A CPU wheel from the
PyTorch CPU index can be measured by its file (`--wheel torch-X+cpu-....whl`), since that index is not
PyPI. Needs network access to PyPI.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import urllib.request

from packaging.tags import compatible_tags, cpython_tags
from packaging.utils import parse_wheel_filename
from packaging.version import Version

#: (label, uv --python-platform, pip platform tags in order of preference) of the platforms readers install on
PLATFORMS = {
    "Linux x86_64 (PyPI: the CUDA build)": ("x86_64-manylinux_2_35", "x86_64"),
    "Linux aarch64 (PyPI)": ("aarch64-manylinux_2_35", "aarch64"),
    "macOS arm64 (PyPI: CPU)": ("aarch64-apple-darwin", "macos"),
}
PYPI_SIMPLE = "https://pypi.org/simple"


def platform_tags(kind: str) -> list[str]:
    """The wheel platform tags such a machine accepts, best first (glibc 2.35, macOS 14)."""
    if kind == "macos":
        return [f"macosx_{v}_0_{a}" for v in range(14, 10, -1) for a in ("arm64", "universal2")]
    legacy = [f"manylinux{v}_{kind}" for v in ("2014", "2010", "1")]
    return [f"manylinux_2_{v}_{kind}" for v in range(35, 4, -1)] + legacy + [f"linux_{kind}"]


def resolve(requirement: str, uv_platform: str, python: str) -> list[tuple[str, str]]:
    """[(name, version)] that uv resolves from PyPI for ``requirement`` on that platform."""
    cmd = [sys.executable, "-m", "uv", "pip", "compile", "-", "--no-header", "--no-annotate", "-q"]
    cmd += ["--python-platform", uv_platform, "--python-version", python, "--index-url", PYPI_SIMPLE]
    env = {**os.environ, "MACOSX_DEPLOYMENT_TARGET": "14.0"}  # torch's macOS wheels need macOS 14
    out = subprocess.run(cmd, input=requirement, check=True, capture_output=True, text=True, env=env).stdout
    return [tuple(line.split(";")[0].strip().split("==")) for line in out.splitlines() if "==" in line]


def file_size(name: str, version: str, python: str, kind: str) -> int:
    """The size of the wheel pip would pick for (name, version), from PyPI's JSON index (PEP 691)."""
    request = urllib.request.Request(
        f"{PYPI_SIMPLE}/{name.lower()}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        files = json.load(response)["files"]
    py = (int(python.split(".")[0]), int(python.split(".")[1]))
    tags = [str(t) for t in cpython_tags(py, platforms=platform_tags(kind))]
    tags += [str(t) for t in compatible_tags(py, platforms=platform_tags(kind))]
    best = {}
    for f in files:
        if not f["filename"].endswith(".whl"):
            continue
        wheel_name, wheel_version, _, wheel_tags = parse_wheel_filename(f["filename"])
        if wheel_version != Version(version):
            continue
        ranks = [tags.index(str(t)) for t in wheel_tags if str(t) in tags]
        if ranks:
            best[min(ranks)] = f["size"]
    if not best:
        raise LookupError(f"no wheel of {name}=={version} for {kind}")
    return best[min(best)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--torch", default="2.13.0", help="the torch version (default: %(default)s)")
    parser.add_argument("--python", default="3.11", help="the Python version (default: %(default)s)")
    parser.add_argument("--wheel", type=pathlib.Path, help="a torch wheel file to report beside them")
    args = parser.parse_args(argv)

    print(f"pip install torch=={args.torch}, Python {args.python}: files pip downloads from PyPI")
    print(f"{'platform':40} {'files':>5} {'torch':>9} {'all':>9}")
    for label, (uv_platform, kind) in PLATFORMS.items():
        pins = resolve(f"torch=={args.torch}", uv_platform, args.python)
        sizes = {name: file_size(name, version, args.python, kind) for name, version in pins}
        print(f"{label:40} {len(pins):5d} {sizes['torch'] / 1e6:7.0f} MB {sum(sizes.values()) / 1e9:7.2f} GB")
    if args.wheel:
        print(f"{args.wheel.name}: {args.wheel.stat().st_size / 1e6:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
