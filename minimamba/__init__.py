"""minimamba: Mamba (Gu & Dao, 2023, arXiv 2312.00752) from the ground up.

Import order matters: ``env`` decides whether Triton runs natively or in its CPU interpreter before any
module imports ``triton``.
"""

from minimamba import env as env  # noqa: I001  (must come first: configures Triton)

env.configure_triton()


from minimamba.testing import check_close  # noqa: E402

__version__ = "0.1.0"
__all__ = ["__version__", "check_close", "env"]
