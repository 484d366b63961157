"""minimamba: Mamba (Gu & Dao, 2023, arXiv 2312.00752) from the ground up.

Import order matters: ``env`` decides whether Triton runs natively or in its CPU interpreter before any
module imports ``triton``.
"""

from minimamba import env as env  # noqa: I001  (must come first: configures Triton)

env.configure_triton()


def _link_source_kernels() -> None:
    """Make ``minimamba.kernels`` importable from a source checkout used without ``pip install``.

    ``kernels/`` sits beside this package and pyproject installs it as ``minimamba.kernels``; with only
    ``PYTHONPATH=.`` that mapping does not exist, and the Triton backend would silently be missing.
    """
    import importlib.util
    import pathlib
    import sys

    if importlib.util.find_spec(f"{__name__}.kernels") is not None:
        return
    init = pathlib.Path(__file__).resolve().parent.parent / "kernels" / "__init__.py"
    if not init.is_file():
        return
    spec = importlib.util.spec_from_file_location(
        f"{__name__}.kernels", init, submodule_search_locations=[str(init.parent)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)


_link_source_kernels()

from minimamba.testing import check_close  # noqa: E402

__version__ = "0.1.0"
__all__ = ["__version__", "check_close", "env"]
