"""The package installs and imports as documented; pyproject.toml and environment.yml list the same packages."""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys
import zipfile

import pytest
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~;\[ ]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_names() -> set[str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {_name(r) for r in meta["dependencies"]}
    names |= {_name(r) for r in meta["optional-dependencies"]["dev"]}
    return names


def _environment_names() -> set[str]:
    names = set()
    text = (ROOT / "environment.yml").read_text().split("dependencies:", 1)[1]
    for line in text.splitlines():
        m = re.match(r"^\s+- ([A-Za-z0-9_.\-]+)", line)
        if m and m.group(1) not in ("pip", "python", "-e", "pip:"):
            names.add(_name(m.group(1)))
    return names


def test_environment_yml_mirrors_pyproject():
    assert _environment_names() == _pyproject_names()


def test_every_package_folder_is_listed_in_pyproject():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(meta["packages"])
    found = {
        "minimamba." + ".".join(p.parent.relative_to(ROOT / "minimamba").parts)
        for p in (ROOT / "minimamba").rglob("__init__.py")
    }
    found = {f.rstrip(".") for f in found}
    found |= {
        ".".join(["minimamba", "kernels", *p.parent.relative_to(ROOT / "kernels").parts])
        for p in (ROOT / "kernels").rglob("__init__.py")
    }
    assert found == listed


def test_kernels_import_as_minimamba_kernels():
    import minimamba.kernels

    assert pathlib.Path(minimamba.kernels.__path__[0]).resolve() == (ROOT / "kernels").resolve()


@pytest.mark.slow
def test_plain_wheel_contains_kernels(tmp_path):
    """A non-editable wheel ships kernels/ as minimamba/kernels/ (and imports it from site-packages)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
    )
    (wheel,) = tmp_path.glob("minimamba-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "minimamba/kernels/__init__.py" in names
    assert "minimamba/scan.py" in names
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
    )
    out = subprocess.run(
        [sys.executable, "-c", "import minimamba.kernels as k, minimamba; print(k.__file__)"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": ""},
    ).stdout
    assert str(target) in out


def test_info_runs():
    out = subprocess.run(
        [sys.executable, "-m", "minimamba", "info"], check=True, capture_output=True, text=True
    ).stdout
    assert "torch" in out and "scan backends" in out and "ref" in out


def test_source_checkout_without_install_finds_the_kernels(tmp_path):
    """With only PYTHONPATH=<checkout> (no pip install), minimamba.kernels still resolves to kernels/."""
    import site

    for name in ("minimamba", "kernels"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    # -S: no site processing, so the editable install's import hook is absent; torch comes from site-packages.
    path = os.pathsep.join([str(tmp_path), *site.getsitepackages()])
    out = subprocess.run(
        [sys.executable, "-S", "-c", "import minimamba.kernels as k; print(k.__file__)"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": path, "PATH": os.environ.get("PATH", "")},
    ).stdout
    assert out.strip() == str(tmp_path / "kernels" / "__init__.py")
