"""Bad input, argument by argument: a TypeError or ValueError that names the argument, before any compute."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from minimamba import scan

BACKENDS = ("ref", "sequential", "hillis_steele", "blelloch", "chunked", "auto")


def good(batch=2, d_inner=4, L=5, N=3):
    return {
        "u": torch.randn(batch, d_inner, L),
        "delta": torch.rand(batch, d_inner, L),
        "A": -torch.rand(d_inner, N),
        "B": torch.randn(batch, N, L),
        "C": torch.randn(batch, N, L),
        "D": torch.randn(d_inner),
        "z": torch.randn(batch, d_inner, L),
        "delta_bias": torch.randn(d_inner),
        "h0": torch.randn(batch, d_inner, N),
    }


def run(backend: str, **changes):
    args = good()
    args.update(changes)
    h0 = args.pop("h0")
    return scan.selective_scan(**args, h0=h0, backend=backend)


# (argument, bad value, exception, message pattern)
CASES = [
    ("u", [[1.0]], TypeError, r"u must be a torch.Tensor, got list"),
    ("u", torch.randn(2, 4), ValueError, r"u must have 3 dimensions, got shape \(2, 4\)"),
    ("u", torch.ones(2, 4, 5, dtype=torch.int64), TypeError, r"u must be float16, bfloat16, float32 or float64, got torch.int64"),
    ("delta", torch.rand(2, 4, 6), ValueError, r"delta must have the shape of u .* got \(2, 4, 6\)"),
    ("delta", torch.ones(2, 4, 5, dtype=torch.int32), TypeError, r"delta must be float16.*got torch.int32"),
    ("delta", torch.rand(2, 4, 5, device="meta"), ValueError, r"delta is on meta, expected the device of u \(cpu\)"),
    ("A", -torch.rand(4), ValueError, r"A must have 2 dimensions, got shape \(4,\)"),
    ("A", -torch.rand(5, 3), ValueError, r"A must have shape \(d_inner, N\) with d_inner = 4, got \(5, 3\)"),
    ("A", -torch.rand(4, 0), ValueError, r"A must have at least one state \(N >= 1\)"),
    ("A", torch.ones(4, 3, dtype=torch.bool), TypeError, r"A must be float16.*got torch.bool"),
    ("A", -torch.rand(4, 3, device="meta"), ValueError, r"A is on meta"),
    ("B", torch.randn(2, 3), ValueError, r"B must have 3 or 4 dimensions, got shape \(2, 3\)"),
    ("B", torch.randn(2, 2, 5), ValueError, r"B must have shape \(batch, N, L\) = \(2, 3, 5\), got \(2, 2, 5\)"),
    ("B", torch.randn(2, 3, 3, 5), ValueError, r"B has 3 groups, which does not divide d_inner = 4"),
    ("B", torch.randn(2, 2, 3, 6), ValueError, r"B must have shape \(batch, groups, N, L\)"),
    ("B", torch.randn(2, 3, 5, device="meta"), ValueError, r"B is on meta"),
    ("C", torch.randn(1, 3, 5), ValueError, r"C must have shape \(batch, N, L\) = \(2, 3, 5\), got \(1, 3, 5\)"),
    ("C", torch.randn(2, 3, 3, 5), ValueError, r"C has 3 groups, which does not divide d_inner = 4"),
    ("C", "C", TypeError, r"C must be a torch.Tensor, got str"),
    ("D", torch.randn(5), ValueError, r"D must have shape \(d_inner,\) = \(4,\), got \(5,\)"),
    ("D", torch.randn(4, 1), ValueError, r"D must have 1 dimensions, got shape \(4, 1\)"),
    ("D", torch.randn(4, device="meta"), ValueError, r"D is on meta"),
    ("z", torch.randn(2, 4, 4), ValueError, r"z must have the shape of u .* got \(2, 4, 4\)"),
    ("z", torch.ones(2, 4, 5, dtype=torch.int64), TypeError, r"z must be float16.*got torch.int64"),
    ("delta_bias", torch.randn(3), ValueError, r"delta_bias must have shape \(d_inner,\) = \(4,\), got \(3,\)"),
    ("delta_bias", 0.5, TypeError, r"delta_bias must be a torch.Tensor, got float"),
    ("h0", torch.randn(2, 4), ValueError, r"h0 must have 3 dimensions, got shape \(2, 4\)"),
    ("h0", torch.randn(2, 4, 2), ValueError, r"h0 must have shape \(batch, d_inner, N\) = \(2, 4, 3\), got \(2, 4, 2\)"),
    ("h0", torch.randn(2, 4, 3, device="meta"), ValueError, r"h0 is on meta"),
]  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name, value, exc, match", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_bad_argument_is_named(backend, name, value, exc, match):
    with pytest.raises(exc, match=match):
        run(backend, **{name: value})


def test_u_on_another_device_than_the_rest():
    """u on the meta device (standing in for a GPU): the other arguments are reported as on the wrong one."""
    with pytest.raises(ValueError, match=r"delta is on cpu, expected the device of u \(meta\)"):
        run("chunked", u=torch.randn(2, 4, 5, device="meta"))


@pytest.mark.parametrize("backend", ["nope", "Chunked", ""])
def test_unknown_backend(backend):
    with pytest.raises(ValueError, match=r"backend must be one of auto, ref, sequential, .*chunked.*got"):
        run(backend)


def test_backend_not_a_string():
    with pytest.raises(TypeError, match=r"backend must be a string, got int"):
        run(3)


def test_triton_unavailable_says_why(monkeypatch):
    monkeypatch.setattr(scan, "_triton_fn", lambda: (None, "Triton is not installed (test)"))
    with pytest.raises(
        ValueError, match=r"backend 'triton' is not available here: Triton is not installed \(test\)"
    ):
        run("triton")
    assert "triton" not in scan.BACKENDS
    assert scan.backend_report()["triton"] == (False, "Triton is not installed (test)")


def test_auto_on_cpu_is_a_pytorch_backend():
    assert scan._auto_backend(torch.zeros(1)) == "chunked"


# ---------------------------------------------------------------------------------------------------------
# The raw scans

RAW = (scan.scan_sequential, scan.scan_hillis_steele, scan.scan_blelloch, scan.scan_chunked)


def raw_good():
    return torch.rand(2, 7, 3), torch.randn(2, 7, 3)


@pytest.mark.parametrize("fn", RAW, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    "a, b, h0, dim, exc, match",
    [
        ("x", None, None, -2, TypeError, r"a must be a torch.Tensor, got str"),
        (None, [1.0], None, -2, TypeError, r"b must be a torch.Tensor, got list"),
        (torch.ones(2, 7, 3, dtype=torch.int64), None, None, -2, TypeError, r"a must be float16.*got torch.int64"),
        (None, torch.randn(2, 7, 4), None, -2, ValueError, r"b must have the shape of a \(2, 7, 3\), got \(2, 7, 4\)"),
        (None, torch.randn(2, 7, 3, dtype=torch.float64), None, -2, TypeError, r"b must have the dtype of a"),
        (None, torch.randn(2, 7, 3, device="meta"), None, -2, ValueError, r"b is on meta, expected the device of a"),
        (None, None, torch.randn(2, 7), -2, ValueError, r"h0 must have the shape of a without dim 1, \(2, 3\), got \(2, 7\)"),
        (None, None, torch.randn(2, 3, dtype=torch.float64), -2, TypeError, r"h0 must have the dtype of a"),
        (None, None, torch.randn(2, 3, device="meta"), -2, ValueError, r"h0 is on meta"),
        (None, None, 1.0, -2, TypeError, r"h0 must be a torch.Tensor or None, got float"),
        (None, None, None, 3, ValueError, r"dim must index a dimension of a \(shape \(2, 7, 3\)\), got dim=3"),
        (None, None, None, 1.5, TypeError, r"dim must be an int, got float"),
        (torch.tensor(1.0), torch.tensor(1.0), None, 0, ValueError, r"dim must index a dimension of a"),
    ],
)  # fmt: skip
def test_raw_scan_bad_input(fn, a, b, h0, dim, exc, match):
    a0, b0 = raw_good()
    with pytest.raises(exc, match=match):
        fn(a0 if a is None else a, b0 if b is None else b, h0, dim=dim)


@pytest.mark.parametrize("chunk", [0, -1, 2.5, True])
def test_chunk_must_be_positive_int(chunk):
    a, b = raw_good()
    with pytest.raises(ValueError, match=r"chunk must be a positive int or None"):
        scan.scan_chunked(a, b, chunk=chunk)


def test_info_lists_every_backend():
    out = subprocess.run(
        [sys.executable, "-m", "minimamba", "info"], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    for name in (*BACKENDS[:-1], "triton"):
        assert f" {name} " in out, f"`python -m minimamba info` does not list backend {name}:\n{out}"
    for name in scan.BACKENDS:
        assert name in scan.backend_report()


def test_auto_on_a_gpu_without_triton_warns_once_and_names_the_reason(monkeypatch):
    import types
    import warnings

    from minimamba import scan

    monkeypatch.setattr(scan, "_triton_fn", lambda: (None, "Triton is not installed"))
    scan._warn_gpu_fallback.cache_clear()
    fake_cuda_tensor = types.SimpleNamespace(is_cuda=True)
    with pytest.warns(RuntimeWarning, match="Triton is not installed"):
        assert scan._auto_backend(fake_cuda_tensor) == "blelloch"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert scan._auto_backend(fake_cuda_tensor) == "blelloch"  # no second warning
