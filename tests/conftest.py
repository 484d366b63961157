"""Test configuration. Importing minimamba first switches Triton to its CPU interpreter when there is no GPU
(TRITON_INTERPRET must be set before `triton` is imported)."""

import matplotlib

matplotlib.use("Agg")  # no display in tests

import minimamba  # noqa: E402, F401, I001  (configures Triton before any test module imports it)
import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def pytest_collection_modifyitems(config, items):
    if not torch.cuda.is_available():
        skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU (run on the H200 with `pytest -m gpu`)")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip_gpu)
