"""check_close and rel_error: the comparison every test and notebook relies on."""

import numpy as np
import pytest
import torch

from minimamba.testing import check_close, rel_error


def test_passes_within_tolerance_and_prints(capsys):
    ref = torch.tensor([1.0, 2.0, 3.0])
    check_close("x", ref, ref * (1 + 1e-7), rtol=1e-6)
    out = capsys.readouterr().out
    assert out.startswith("✔ x: max abs diff") and "rtol 1e-06" in out


def test_fails_outside_tolerance():
    with pytest.raises(AssertionError, match="x: not close"):
        check_close("x", torch.ones(3), torch.ones(3) * 1.01, rtol=1e-3, atol=0)


def test_atol_alone_allows_small_absolute_errors_near_zero():
    check_close("near zero", torch.zeros(2), torch.full((2,), 1e-9), rtol=0, atol=1e-8)


def test_nan_in_output_fails():
    with pytest.raises(AssertionError, match="NaN"):
        check_close("x", torch.ones(2), torch.tensor([1.0, float("nan")]))


def test_shape_mismatch_fails():
    with pytest.raises(AssertionError, match="shape"):
        check_close("x", torch.ones(2), torch.ones(3))


def test_complex_imaginary_part_is_compared():
    a = torch.tensor([1 + 1j])
    check_close("same", a, a.clone())
    with pytest.raises(AssertionError):
        check_close("imaginary differs", a, torch.tensor([1 + 2j]))


def test_accepts_numpy_and_numbers():
    check_close("numpy", np.array([1.0, 2.0]), torch.tensor([1.0, 2.0]))
    check_close("number", 3.0, 3.0)


def test_rel_error():
    assert rel_error(torch.tensor([3.0, 4.0]), torch.tensor([3.0, 4.0])) == 0.0
    assert rel_error(torch.tensor([3.0, 4.0]), torch.tensor([0.0, 0.0])) == pytest.approx(1.0)
    assert rel_error(torch.tensor([1 + 1j]), torch.tensor([1 + 2j])) == pytest.approx(1 / 2**0.5)
    assert rel_error(torch.zeros(2), torch.zeros(2)) == 0.0


def test_nbval_sanitizer_hides_only_the_measured_differences(capsys):
    """notebooks/nbval_sanitize.cfg: two runs whose rounding differs print the same line once sanitized."""
    import pathlib
    import re

    from nbval.plugin import get_sanitize_patterns

    cfg = pathlib.Path(__file__).parents[1] / "notebooks" / "nbval_sanitize.cfg"
    patterns = get_sanitize_patterns(cfg.read_text())
    assert patterns, f"{cfg} holds no regex/replace pair nbval can read"

    def sanitized(delta: float) -> str:
        ref = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
        check_close("conv vs loop", ref, ref + delta, rtol=1e-12, atol=1e-12)
        out = capsys.readouterr().out
        for regex, replace in patterns:
            out = re.sub(regex, replace, out)
        return out

    a, b = sanitized(2.22e-16), sanitized(4.44e-16)
    assert a == b
    assert "e-16" not in a  # the numbers are gone ...
    assert (
        a.startswith("✔ conv vs loop: max abs diff") and "(rtol 1e-12, atol 1e-12)" in a
    )  # ... the rest stays
    with pytest.raises(AssertionError):  # and a failing comparison still fails in the notebook
        sanitized(1e-3)
