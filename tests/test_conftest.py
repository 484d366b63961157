"""tests/conftest.py's rules: which modules ``pytest -m gpu`` leaves out."""

import pathlib

from conftest import NOTEBOOK_ONLY

HERE = pathlib.Path(__file__).parent


def test_modules_left_out_of_gpu_runs_hold_no_gpu_test():
    left_out = [p for p in HERE.glob("test_*.py") if p.name.startswith(NOTEBOOK_ONLY)]
    assert len(left_out) >= 10  # the viz modules and the notebook markers
    for p in left_out:
        assert "mark.gpu" not in p.read_text(), (
            f"{p.name} has a GPU test but `pytest -m gpu` skips the module"
        )
