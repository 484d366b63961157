"""Where are we running? CUDA, compute capability, Colab, and how Triton will run here.

This module is imported first by ``minimamba/__init__.py``. With no GPU it switches Triton to its CPU
interpreter (``TRITON_INTERPRET=1``) *before* anything imports ``triton``: the variable is read when
``@triton.jit`` decorates a function, so setting it later has no effect (triton issues 4317, 5142).
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
from dataclasses import dataclass

import torch

__all__ = [
    "FAST",
    "TritonStatus",
    "compute_capability",
    "configure_triton",
    "has_cuda",
    "in_colab",
    "info",
    "supports_bf16_kernels",
    "triton_status",
]


def has_cuda() -> bool:
    """True when PyTorch sees a CUDA device."""
    return torch.cuda.is_available()


def compute_capability(device: int | torch.device | None = None) -> tuple[int, int] | None:
    """(major, minor) of the CUDA device, or None without CUDA."""
    if not has_cuda():
        return None
    return tuple(torch.cuda.get_device_capability(device))  # type: ignore[return-value]


def supports_bf16_kernels(device: int | torch.device | None = None) -> bool:
    """bf16 Triton kernels need compute capability >= 8.0.

    Not ``torch.cuda.is_bf16_supported()``: it says True on a T4 (7.5) through emulation, where Triton
    fails with "Feature '.bf16' requires .target sm_80".
    """
    cc = compute_capability(device)
    return cc is not None and cc >= (8, 0)


def in_colab() -> bool:
    """True inside Google Colab."""
    return "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() not in ("", "0", "false", "no", "off")


#: Heavy notebook cells scale down when FAST is on. Default: on without a GPU, off with one.
#: Override with the environment variable ``FAST=0`` / ``FAST=1``.
FAST: bool = _flag("FAST", default=not has_cuda())


@dataclass(frozen=True)
class TritonStatus:
    installed: bool
    version: str | None
    interpreted: bool  # kernels run through Triton's numpy interpreter on CPU tensors
    usable: bool  # a kernel can be launched here (natively on a GPU, or interpreted)
    reason: str  # one line a reader can act on


def configure_triton() -> None:
    """Turn on Triton's CPU interpreter when there is no GPU, before ``triton`` is imported.

    Respects an explicit ``TRITON_INTERPRET`` set by the user. Safe to call more than once.
    """
    if "TRITON_INTERPRET" in os.environ:
        return
    if not has_cuda():
        os.environ["TRITON_INTERPRET"] = "1"


def triton_status() -> TritonStatus:
    """Can Triton kernels run here, and how?"""
    spec = importlib.util.find_spec("triton")
    if spec is None:
        why = (
            "Triton is not installed (Linux only: `pip install triton`)"
            if platform.system() == "Linux"
            else f"Triton has no wheels for {platform.system()}; the PyTorch scans are used instead"
        )
        return TritonStatus(False, None, False, False, why)
    import triton  # noqa: PLC0415  (after configure_triton has run)

    interpreted = _flag("TRITON_INTERPRET", default=False)
    if interpreted:
        return TritonStatus(
            True, triton.__version__, True, True, "no GPU: kernels run in Triton's CPU interpreter (slow)"
        )
    if not has_cuda():
        return TritonStatus(
            True,
            triton.__version__,
            False,
            False,
            "no GPU and TRITON_INTERPRET is off: set TRITON_INTERPRET=1 before importing minimamba",
        )
    cc = compute_capability()
    return TritonStatus(True, triton.__version__, False, True, f"native on a GPU of compute capability {cc}")


def info() -> str:
    """The versions, the device and the scan backends: the first thing to run on a broken set-up."""
    from minimamba import scan  # noqa: PLC0415  (scan imports env)

    lines = [
        f"python        {platform.python_version()} ({sys.executable})",
        f"platform      {platform.platform()}",
        f"torch         {torch.__version__}",
    ]
    ts = triton_status()
    lines.append(f"triton        {ts.version or 'not installed'}")
    if has_cuda():
        cc = compute_capability()
        lines.append(
            f"device        cuda: {torch.cuda.get_device_name()} (compute capability {cc[0]}.{cc[1]})"
        )
        lines.append(
            f"bf16 kernels  {'yes' if supports_bf16_kernels() else 'no (needs compute capability >= 8.0)'}"
        )
    else:
        lines.append("device        cpu (no CUDA device visible to PyTorch)")
    lines.append(f"colab         {in_colab()}")
    lines.append(f"FAST          {FAST} (heavy notebook cells scale down; set FAST=0 to run them in full)")
    lines.append("scan backends:")
    for name, (ok, why) in scan.backend_report().items():
        lines.append(f"  {'+' if ok else '-'} {name:14s} {why}")
    return "\n".join(lines)
