"""One comparison helper for tests and notebooks alike."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["check_close", "rel_error"]


def _as_tensor(x) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach()
    return torch.as_tensor(np.asarray(x))


def rel_error(ref, out) -> float:
    """‖out − ref‖ / ‖ref‖ in float64 (complex128 for complex input; 0 when both are zero)."""
    ref_t, out_t = _as_tensor(ref), _as_tensor(out)
    dtype = torch.complex128 if ref_t.is_complex() or out_t.is_complex() else torch.float64
    ref_t, out_t = ref_t.to(dtype).cpu(), out_t.to(dtype).cpu()
    den = ref_t.norm().item()
    num = (out_t - ref_t).norm().item()
    return num / den if den > 0 else num


def check_close(name: str, ref, out, rtol: float = 1e-5, atol: float = 1e-8, verbose: bool = True) -> None:
    """Print the max abs / rel difference of ``out`` against ``ref``, then assert they are close.

    Passes when ``|out - ref| <= atol + rtol * |ref|`` elementwise (as ``torch.allclose``) and nothing is NaN.
    Accepts tensors, numpy arrays, and Python numbers; compares in float64 on the CPU.
    """
    ref_t, out_t = _as_tensor(ref), _as_tensor(out)
    if ref_t.is_complex() or out_t.is_complex():  # compare both parts: never drop the imaginary one
        ref_t, out_t = (torch.view_as_real(x.to(torch.complex128).resolve_conj()) for x in (ref_t, out_t))
    ref_t, out_t = ref_t.double().cpu(), out_t.double().cpu()
    if ref_t.shape != out_t.shape:
        raise AssertionError(f"{name}: shape {tuple(out_t.shape)} != reference shape {tuple(ref_t.shape)}")
    if torch.isnan(out_t).any() and not torch.isnan(ref_t).any():
        raise AssertionError(f"{name}: output has {int(torch.isnan(out_t).sum())} NaN values")
    diff = (out_t - ref_t).abs()
    max_abs = diff.max().item() if diff.numel() else 0.0
    max_rel = (diff / ref_t.abs().clamp_min(1e-300)).max().item() if diff.numel() else 0.0
    ok = bool(torch.allclose(out_t, ref_t, rtol=rtol, atol=atol, equal_nan=True))
    if verbose:
        mark = "✔" if ok else "✘"
        print(
            f"{mark} {name}: max abs diff {max_abs:.2e}, max rel diff {max_rel:.2e} (rtol {rtol:g}, atol {atol:g})"
        )
    if not ok:
        raise AssertionError(
            f"{name}: not close: max abs diff {max_abs:.3e}, max rel diff {max_rel:.3e} "
            f"exceed rtol={rtol:g}, atol={atol:g}"
        )
