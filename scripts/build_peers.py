"""Build the peers we measure against, mamba_ssm and causal_conv1d, for this machine's GPU only.

    python scripts/build_peers.py download .peers     # on a machine that reaches PyPI: the sdists, checked
    python scripts/build_peers.py build .peers        # on the GPU machine (no network needed)
    export PYTHONPATH="$(python scripts/build_peers.py path .peers)"

Their own setup.py files compile for nine GPU architectures and first try to download a prebuilt wheel,
which fails offline. Here each CUDA extension (mamba_ssm's ``selective_scan_cuda``, causal_conv1d's
``causal_conv1d_cuda``) is built from its own sources with its own nvcc flags, for the local compute
capability alone, with ``torch.utils.cpp_extension`` and ``build_ext --inplace``; the two builds run in
parallel. The unmodified Python packages then import from their unpacked folders. einops (a pure-Python
wheel mamba_ssm needs) imports from its wheel file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import subprocess
import sys
import tarfile
import textwrap
import urllib.request

#: (PyPI project, file) of each peer: the versions measured in results/ and RESULTS.md
FILES = {
    "mamba-ssm": "mamba_ssm-2.3.2.post1.tar.gz",
    "causal-conv1d": "causal_conv1d-1.7.0.tar.gz",
    "einops": "einops-0.8.1-py3-none-any.whl",
}
#: extension name, sources (relative to the unpacked sdist), include folder
EXTENSIONS = {
    "mamba-ssm": (
        "selective_scan_cuda",
        ["csrc/selective_scan/selective_scan.cpp"]
        + [f"csrc/selective_scan/selective_scan_fwd_{t}.cu" for t in ("fp32", "fp16", "bf16")]
        + [
            f"csrc/selective_scan/selective_scan_bwd_{t}_{k}.cu"
            for t in ("fp32", "fp16", "bf16")
            for k in ("real", "complex")
        ],
        "csrc/selective_scan",
    ),
    "causal-conv1d": (
        "causal_conv1d_cuda",
        ["csrc/causal_conv1d.cpp"] + [f"csrc/causal_conv1d_{p}.cu" for p in ("fwd", "bwd", "update")],
        "csrc",
    ),
}
#: the nvcc flags of both setup.py files, less their -gencode list
NVCC_FLAGS = [
    "-O3",
    "-std=c++17",
    "-U__CUDA_NO_HALF_OPERATORS__",
    "-U__CUDA_NO_HALF_CONVERSIONS__",
    "-U__CUDA_NO_BFLOAT16_OPERATORS__",
    "-U__CUDA_NO_BFLOAT16_CONVERSIONS__",
    "-U__CUDA_NO_BFLOAT162_OPERATORS__",
    "-U__CUDA_NO_BFLOAT162_CONVERSIONS__",
    "--expt-relaxed-constexpr",
    "--expt-extended-lambda",
    "--use_fast_math",
    "-lineinfo",
]


def download(folder: pathlib.Path) -> None:
    """Fetch each file from PyPI and check its sha256 against the index's."""
    folder.mkdir(parents=True, exist_ok=True)
    for project, filename in FILES.items():
        request = urllib.request.Request(
            f"https://pypi.org/simple/{project}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            (entry,) = [f for f in json.load(response)["files"] if f["filename"] == filename]
        data = urllib.request.urlopen(entry["url"], timeout=120).read()
        if hashlib.sha256(data).hexdigest() != entry["hashes"]["sha256"]:
            raise RuntimeError(f"{filename}: sha256 differs from PyPI's index; not written")
        (folder / filename).write_bytes(data)
        print(f"{filename}: {len(data)} bytes, sha256 checked")


def unpacked(folder: pathlib.Path, project: str) -> pathlib.Path:
    return folder / FILES[project].removesuffix(".tar.gz")


def build(folder: pathlib.Path) -> None:
    import torch  # noqa: PLC0415

    if not torch.cuda.is_available():
        raise RuntimeError("build needs a CUDA GPU: the extensions are compiled for its compute capability")
    major, minor = torch.cuda.get_device_capability()
    gencode = ["-gencode", f"arch=compute_{major}{minor},code=sm_{major}{minor}"]
    jobs = max(1, (os.cpu_count() or 2) // len(EXTENSIONS))
    procs = []
    for project, (name, sources, include) in EXTENSIONS.items():
        src = unpacked(folder, project)
        if not src.is_dir():
            with tarfile.open(folder / FILES[project]) as tar:
                tar.extractall(folder, filter="data")
        script = textwrap.dedent(
            f"""
            from setuptools import setup
            from torch.utils.cpp_extension import BuildExtension, CUDAExtension
            setup(
                name={name!r}, packages=[], script_args=["build_ext", "--inplace"],
                ext_modules=[CUDAExtension({name!r}, {sources!r}, include_dirs=[{include!r}],
                    extra_compile_args={{"cxx": ["-O3", "-std=c++17"], "nvcc": {NVCC_FLAGS + gencode!r}}})],
                cmdclass={{"build_ext": BuildExtension}},
            )
            """
        )
        env = {**os.environ, "MAX_JOBS": str(jobs)}
        log = open(folder / f"build_{name}.log", "w")  # noqa: SIM115  (closed when the process ends)
        procs.append(
            (
                name,
                log,
                subprocess.Popen(
                    [sys.executable, "-c", script], cwd=src, env=env, stdout=log, stderr=subprocess.STDOUT
                ),
            )
        )
    for name, log, proc in procs:
        if proc.wait() != 0:
            raise RuntimeError(f"building {name} failed: see {log.name}")
        log.close()
        print(f"{name}: built for sm_{major}{minor}")


def path(folder: pathlib.Path) -> str:
    """The PYTHONPATH entries that make the built peers importable."""
    return os.pathsep.join(
        [
            str(unpacked(folder, "mamba-ssm").resolve()),
            str(unpacked(folder, "causal-conv1d").resolve()),
            str((folder / FILES["einops"]).resolve()),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["download", "build", "path"])
    parser.add_argument("folder", type=pathlib.Path, help="where the sdists are (or go)")
    args = parser.parse_args(argv)
    if args.command == "download":
        download(args.folder)
    elif args.command == "build":
        build(args.folder)
    else:
        print(path(args.folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
