"""The teaching kernels of notebook 06 against float64 loops written here (interpreter on CPU, native on GPU).

The interpreter costs about 150–200 µs per scanned element: sizes stay tiny (a few thousand elements).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from minimamba.kernels.teaching import (
    MAX_BLOCK_L,
    chunked_first_order_scan,
    first_order_scan,
    silu_gate,
)

from minimamba.testing import check_close

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
BLOCK_L = 16  # chunk size of the chunked tests: L = 15, 17 straddle it


def loop_scan(a, b, h0=None, reverse=False):
    """h_t = a_t h_{t-1} + b_t (reverse: h_t = a_t h_{t+1} + b_t), one step at a time in float64."""
    a, b = a.double().cpu(), b.double().cpu()
    rows, L = a.shape
    h = torch.zeros(rows, dtype=torch.float64) if h0 is None else h0.double().cpu().clone()
    out = torch.empty(rows, L, dtype=torch.float64)
    for t in range(L - 1, -1, -1) if reverse else range(L):
        h = a[:, t] * h + b[:, t]
        out[:, t] = h
    return out


def inputs(rows, L, dtype=torch.float32):
    # decays in (0.5, 1): the state remembers tens of steps, as exp(Δ A) does in Mamba
    a = (0.5 + 0.5 * torch.rand(rows, L)).to(DEVICE, dtype)
    b = torch.randn(rows, L).to(DEVICE, dtype)
    h0 = torch.randn(rows).to(DEVICE, dtype)
    return a, b, h0


@pytest.mark.parametrize("L", [1, 7, 1000])
@pytest.mark.parametrize("reverse", [False, True])
def test_first_order_scan(L, reverse):
    a, b, _ = inputs(2, L)
    h = first_order_scan(a, b, reverse=reverse)
    assert h.dtype == torch.float32 and h.shape == (2, L)
    check_close(f"first_order_scan L={L} reverse={reverse}", loop_scan(a, b, reverse=reverse), h, 1e-5, 1e-5)


@pytest.mark.parametrize("reverse", [False, True])
def test_first_order_scan_h0_and_rows(reverse):
    a, b, h0 = inputs(5, 33)
    h = first_order_scan(a, b, h0, reverse=reverse)
    check_close("first_order_scan with h0", loop_scan(a, b, h0, reverse), h, 1e-5, 1e-5)


def test_first_order_scan_fp64_stays_fp64():
    a, b, h0 = inputs(3, 9, torch.float64)
    h = first_order_scan(a, b, h0)
    assert h.dtype == torch.float64
    check_close("first_order_scan fp64", loop_scan(a, b, h0), h, 1e-12, 1e-12)


def test_first_order_scan_fp16_input_scans_in_fp32():
    a, b, h0 = inputs(2, 50, torch.float16)
    h = first_order_scan(a, b, h0)
    assert h.dtype == torch.float32
    # the reference sees the same fp16-rounded inputs, so only fp32 rounding separates them
    check_close("first_order_scan fp16 in", loop_scan(a, b, h0), h, 1e-5, 1e-5)


@pytest.mark.parametrize("L", [1, BLOCK_L - 1, BLOCK_L, BLOCK_L + 1, 1000])
@pytest.mark.parametrize("with_h0", [False, True])
def test_chunked_first_order_scan(L, with_h0):
    a, b, h0 = inputs(2, L)
    h0 = h0 if with_h0 else None
    h = chunked_first_order_scan(a, b, h0, BLOCK_L=BLOCK_L)
    check_close(f"chunked L={L} h0={with_h0}", loop_scan(a, b, h0), h, 1e-5, 1e-5)


@pytest.mark.parametrize("L", [BLOCK_L + 1, 100])
def test_chunked_first_order_scan_reverse(L):
    a, b, h0 = inputs(3, L)
    h = chunked_first_order_scan(a, b, h0, BLOCK_L=BLOCK_L, reverse=True)
    check_close(f"chunked reverse L={L}", loop_scan(a, b, h0, reverse=True), h, 1e-5, 1e-5)


@pytest.mark.parametrize("BLOCK", [1, 4])
def test_chunked_tiny_blocks(BLOCK):
    """A chunk of one step is the sequential loop itself: every step goes through the carry."""
    a, b, h0 = inputs(2, 9)
    h = chunked_first_order_scan(a, b, h0, BLOCK_L=BLOCK)
    check_close(f"chunked BLOCK_L={BLOCK}", loop_scan(a, b, h0), h, 1e-5, 1e-5)


def test_scans_of_empty_inputs():
    a = torch.empty(3, 0, device=DEVICE)
    assert first_order_scan(a, a).shape == (3, 0)
    assert chunked_first_order_scan(a, a).shape == (3, 0)


@pytest.mark.parametrize("shape", [(1,), (3, 7), (1000,), (2, 3, 171)])
@pytest.mark.parametrize("BLOCK", [64, 1024])
def test_silu_gate(shape, BLOCK):
    x = torch.randn(shape, device=DEVICE)
    z = 3 * torch.randn(shape, device=DEVICE)
    xd, zd = x.double().cpu(), z.double().cpu()
    ref = xd * zd / (1 + torch.exp(-zd))  # x · z · sigmoid(z), written out
    check_close(f"silu_gate {shape} BLOCK={BLOCK}", ref, silu_gate(x, z, BLOCK=BLOCK), 1e-5, 1e-6)


def test_silu_gate_keeps_dtype_and_handles_views():
    x = torch.randn(6, 5, device=DEVICE, dtype=torch.float64).t()  # not contiguous
    z = torch.randn(6, 5, device=DEVICE, dtype=torch.float64).t()
    y = silu_gate(x, z)
    assert y.dtype == torch.float64 and y.shape == (5, 6)
    check_close("silu_gate on a transposed view", x * F.silu(z), y, 1e-6, 1e-7)


# ------------------------------------------------------------------------------------------------------
# Bad input: clear errors naming the argument, before any kernel runs.


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: first_order_scan([1.0], torch.ones(1, 1)), TypeError, "a must be a torch.Tensor, got list"),
        (
            lambda: first_order_scan(torch.ones(1, 2), torch.ones(1, 2, dtype=torch.int64)),
            TypeError,
            "b must be",
        ),
        (
            lambda: first_order_scan(torch.ones(4), torch.ones(4)),
            ValueError,
            r"a must have shape \(rows, L\)",
        ),
        (
            lambda: first_order_scan(torch.ones(2, 3), torch.ones(2, 4)),
            ValueError,
            r"b must have the shape of a",
        ),
        (
            lambda: first_order_scan(torch.ones(2, 3), torch.ones(2, 3), torch.ones(3)),
            ValueError,
            r"h0 must have shape \(rows,\) = \(2,\), got \(3,\)",
        ),
        (
            lambda: first_order_scan(torch.ones(1, MAX_BLOCK_L + 1), torch.ones(1, MAX_BLOCK_L + 1)),
            ValueError,
            "use chunked_first_order_scan",
        ),
        (
            lambda: chunked_first_order_scan(torch.ones(1, 3), torch.ones(1, 3), BLOCK_L=48),
            ValueError,
            "BLOCK_L must be a power of 2 between 1 and 16384, got 48",
        ),
        (
            lambda: chunked_first_order_scan(torch.ones(1, 3), torch.ones(1, 3), BLOCK_L=16.0),
            TypeError,
            "BLOCK_L must be an int, got float",
        ),
        (lambda: silu_gate(torch.ones(3), torch.ones(4)), ValueError, r"z must have the shape of x \(3,\)"),
        (
            lambda: silu_gate(torch.ones(3), torch.ones(3, dtype=torch.float64)),
            TypeError,
            "z must have the dtype",
        ),
        (lambda: silu_gate(torch.ones(3), torch.ones(3), BLOCK=0), ValueError, "BLOCK must be a power of 2"),
    ],
)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
