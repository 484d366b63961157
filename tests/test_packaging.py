"""The package installs and imports as documented, wherever a reader is.

- pyproject.toml, environment.yml and requirements/lock.txt agree;
- the repository root shadows no other package (transformers imports Hugging Face's `kernels`);
- the repository's address is written once and used by the README, the badges and every set-up cell;
- a wheel, installed without the source tree, runs `python -m minimamba info` and the notebooks that read
  committed results from a folder outside the repository.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import site
import subprocess
import sys
import sysconfig
import tomllib
import zipfile

import pytest
from packaging.requirements import Requirement

ROOT = pathlib.Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
REPO = PYPROJECT["project"]["urls"]["Repository"]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))


def _requirements(extras: tuple[str, ...] = ("dev",)) -> list[Requirement]:
    meta = PYPROJECT["project"]
    reqs = [Requirement(r) for r in meta["dependencies"]]
    for extra in extras:
        reqs += [Requirement(r) for r in meta["optional-dependencies"][extra]]
    return reqs


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _environment_requirements() -> dict[str, str]:
    """environment.yml's packages as {name: specifier}, conda's and pip's alike."""
    out = {}
    text = (ROOT / "environment.yml").read_text().split("dependencies:", 1)[1]
    for line in text.splitlines():
        m = re.match(r"^\s+- ([A-Za-z0-9_.\-]+)\s*([<>=!~][^#]*)?", line)
        if m and m.group(1) not in ("pip", "python", "-e", "pip:"):
            out[_canonical(m.group(1))] = (m.group(2) or "").strip()
    return out


def _lock() -> dict[str, list[tuple[str, str]]]:
    """requirements/lock.txt as {name: [(version, marker), ...]} (a universal lock may fork by marker)."""
    out: dict[str, list[tuple[str, str]]] = {}
    for line in (ROOT / "requirements" / "lock.txt").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)\s*(?:;\s*(.*))?$", line)
        if m:
            out.setdefault(_canonical(m.group(1)), []).append((m.group(2), m.group(3) or ""))
    return out


# ------------------------------------------------------------------------------------------ declared versions


def test_environment_yml_mirrors_pyproject():
    """Same packages and the same lower bounds (conda's `>=` is pip's)."""
    py = {_canonical(r.name): str(r.specifier) for r in _requirements()}
    assert _environment_requirements() == py


def test_python_floor_is_the_one_the_readme_states():
    floor = PYPROJECT["project"]["requires-python"]
    assert floor == ">=3.11"  # 3.10 reached its end of life in October 2026 (PEP 619)
    assert PYPROJECT["tool"]["ruff"]["target-version"] == "py311"
    assert "Python ≥ 3.11" in (ROOT / "README.md").read_text()


def test_license_is_an_spdx_expression():
    """PEP 639: a string, not the TOML table that setuptools deprecates."""
    assert PYPROJECT["project"]["license"] == "MIT"


def test_lock_pins_every_dependency_within_pyproject_bounds():
    """Every requirement of every extra is locked to one exact version that pyproject's range admits."""
    lock = _lock()
    extras = tuple(PYPROJECT["project"]["optional-dependencies"])
    for req in _requirements(extras):
        pins = lock.get(_canonical(req.name))
        assert pins, f"{req.name} is not in requirements/lock.txt: run `make lock`"
        for version, _marker in pins:
            assert req.specifier.contains(version, prereleases=True), f"{req.name}=={version} vs {req}"


def test_lock_pins_torch_once():
    """The Makefile installs torch first at the lock's version; a universal lock must not fork it."""
    (pin,) = _lock()["torch"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", pin[0]) and pin[1] == ""


# -------------------------------------------------------------------------------------- the repository root


def test_the_root_holds_one_package():
    """Only minimamba is importable from the root: a folder with __init__.py or a .py file there would
    hide an installed package of the same name from a Python started at the root."""
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    modules = {p.stem for p in ROOT.glob("*.py")}
    assert packages == {"minimamba"} and modules == set()


def test_transformers_imports_from_the_repository_root():
    """`python` started at the root puts the root on sys.path; Hugging Face's `kernels` must still win."""
    pytest.importorskip("transformers")
    code = (
        "import importlib.util, pathlib, sys\n"
        "assert sys.path[0] == ''\n"
        "from transformers import MambaConfig, MambaForCausalLM\n"
        "MambaForCausalLM(MambaConfig(vocab_size=16, hidden_size=8, num_hidden_layers=1))\n"
        "spec = importlib.util.find_spec('kernels')\n"
        "assert spec is None or pathlib.Path(spec.origin or '').parent != pathlib.Path.cwd() / 'kernels'\n"
        "import minimamba.kernels.selective_scan\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_kernels_import_as_minimamba_kernels():
    import minimamba.kernels.selective_scan
    import minimamba.kernels.teaching

    for module in (minimamba.kernels.selective_scan, minimamba.kernels.teaching):
        op = module.__name__.rsplit(".", 1)[1]
        assert pathlib.Path(module.__file__).parent.resolve() == (ROOT / "kernels" / op).resolve()


def test_every_package_folder_is_listed_in_pyproject():
    setup = PYPROJECT["tool"]["setuptools"]
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "minimamba").rglob("__init__.py")}
    ops = {p.parent.relative_to(ROOT / "kernels") for p in (ROOT / "kernels").rglob("__init__.py")}
    found |= {".".join(["minimamba", "kernels", *op.parts]) for op in ops}
    assert set(setup["packages"]) == found | {"minimamba.results"}
    for op in ops:  # each op's folder is mapped to its place in the package
        assert setup["package-dir"][".".join(["minimamba", "kernels", *op.parts])] == f"kernels/{op}"


def test_source_checkout_without_install_finds_the_kernels(tmp_path):
    """With only PYTHONPATH=<checkout> (no pip install), minimamba.kernels.<op> resolves to kernels/<op>."""
    for name in ("minimamba", "kernels"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    # -S: no site processing, so the editable install's import hook is absent; torch comes from site-packages.
    path = os.pathsep.join([str(tmp_path), *site.getsitepackages()])
    out = subprocess.run(
        [sys.executable, "-S", "-c", "import minimamba.kernels.selective_scan as k; print(k.__file__)"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": path, "PATH": os.environ.get("PATH", "")},
    ).stdout
    assert out.strip() == str(tmp_path / "kernels" / "selective_scan" / "__init__.py")


# ----------------------------------------------------------------------------- one address, Colab's set-up


def _colab_badge(notebook: pathlib.Path) -> str:
    repo = REPO.removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{repo}/blob/main/notebooks/{notebook.name}"


def _setup_block(notebook: pathlib.Path) -> str:
    code = [c for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]
    source = "".join(code[0]["source"])
    return source[source.index("# Set-up") : source.index("import minimamba\n") + len("import minimamba\n")]


def test_the_repository_address_is_written_once():
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", REPO)
    texts = {p: p.read_text() for p in [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *NOTEBOOKS]}
    for path, text in texts.items():  # no other address of this project anywhere
        for other in re.findall(r"github\.com/[\w.-]+/minimamba\b", text):
            assert "https://" + other == REPO, f"{path.name}: {other}"
    assert REPO in texts[ROOT / "README.md"]
    for nb in NOTEBOOKS:
        first = "".join(json.loads(nb.read_text())["cells"][0]["source"])
        assert f"]({_colab_badge(nb)})" in first, f"{nb.name}: Colab badge"
        assert f'REPO = "{REPO}"' in _setup_block(nb), f"{nb.name}: set-up cell"


def test_every_notebook_has_the_same_setup_block():
    blocks = {nb.name: _setup_block(nb) for nb in NOTEBOOKS}
    assert len(set(blocks.values())) == 1, blocks.keys()


def _run_setup(tmp_path: pathlib.Path, dist_info: str | None) -> list[str]:
    """The set-up block run in a fresh Python whose only `minimamba` distribution is `dist_info` (METADATA
    text; None: not installed); returns the %pip lines it would run."""
    site_dir = tmp_path / "site"
    site_dir.mkdir(parents=True)
    if dist_info is not None:
        (site_dir / "minimamba-1.0.1.dist-info").mkdir()
        (site_dir / "minimamba-1.0.1.dist-info" / "METADATA").write_text(dist_info)
    block = _setup_block(NOTEBOOKS[0]).replace("import minimamba\n", "")
    block = re.sub(r"^(\s*)%pip (.*)$", lambda m: f"{m[1]}calls.append(f'{m[2]}')", block, flags=re.M)
    code = f"import sys\nsys.path.insert(0, {str(site_dir)!r})\ncalls = []\n{block}\nprint(repr(calls))"
    out = subprocess.run(
        [sys.executable, "-S", "-c", code], check=True, capture_output=True, text=True, cwd=tmp_path
    )
    return eval(out.stdout)  # noqa: S307  (a list literal printed by the line above)


def test_setup_cell_installs_this_project_over_the_pypi_namesake(tmp_path):
    install = f'install -q "minimamba @ git+{REPO}"'
    namesake = "Metadata-Version: 2.1\nName: minimamba\nVersion: 1.0.1\n"  # PyPI's: another author's
    assert _run_setup(tmp_path / "a", namesake) == ["uninstall -q -y minimamba", install]
    assert _run_setup(tmp_path / "b", None) == ["uninstall -q -y minimamba", install]
    ours = f"Metadata-Version: 2.4\nName: minimamba\nVersion: 0.1.0\nProject-URL: Repository, {REPO}\n"
    assert _run_setup(tmp_path / "c", ours) == []


# ------------------------------------------------------------------------------- installed as a user would


def _build_wheel(out: pathlib.Path) -> pathlib.Path:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    assert "Deprecat" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    (wheel,) = out.glob("minimamba-*.whl")
    return wheel


@pytest.mark.slow
def test_wheel_installed_outside_the_repository(tmp_path):
    """The wheel holds the kernels and the committed results; installed into a fresh virtual environment
    (dependencies borrowed from this one, the source tree nowhere on sys.path) it runs `minimamba info` and
    the notebooks that read committed results, from a folder outside the repository."""
    wheel = _build_wheel(tmp_path / "dist")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"minimamba/kernels/__init__.py", "minimamba/kernels/selective_scan/fwd.py"} <= names
    assert {
        "minimamba/kernels/selective_scan/results.json",
        "minimamba/kernels/causal_conv1d/results.json",
    } <= names
    shipped = {n.removeprefix("minimamba/results/") for n in names if n.startswith("minimamba/results/")}
    results = ROOT / "results"  # every file, the run folders' too (language/, one subfolder per seed);
    # not the checkpoints scripts/run_language.py keeps while a run is unfinished
    files = {
        p for p in results.rglob("*") if p.is_file() and "checkpoints" not in p.relative_to(results).parts
    }
    assert shipped == {p.relative_to(results).as_posix() for p in files}

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    venv_site = pathlib.Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # This environment's packages as plain path entries: their .pth files (the editable install's import
    # hook among them) are not processed, so minimamba can only come from the wheel.
    deps = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (venv_site / "_deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index"]
    subprocess.run([*pip, "--target", str(venv_site), str(wheel)], check=True)

    away = tmp_path / "elsewhere"
    away.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH")}
    run = dict(cwd=away, env=env, check=True, capture_output=True, text=True)
    where = subprocess.run(
        [
            python,
            "-c",
            "import minimamba, minimamba.kernels.selective_scan as s; print(minimamba.__file__, s.__file__)",
        ],
        **run,
    ).stdout.split()
    assert all(pathlib.Path(p).is_relative_to(venv_site) for p in where), where
    info = subprocess.run([python, "-m", "minimamba", "info"], **run).stdout
    assert "torch" in info and "scan backends" in info

    for name in ("06_triton_scan.ipynb", "08_synthetic_tasks.ipynb", "nbval_sanitize.cfg"):
        shutil.copy(ROOT / "notebooks" / name, away / name)
    nbval = ["--nbval-lax", "--nbval-current-env", "--nbval-sanitize-with", "nbval_sanitize.cfg"]
    proc = subprocess.run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *nbval, "."],
        cwd=away,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]


def test_info_runs():
    out = subprocess.run(
        [sys.executable, "-m", "minimamba", "info"], check=True, capture_output=True, text=True
    ).stdout
    assert "torch" in out and "scan backends" in out and "ref" in out
