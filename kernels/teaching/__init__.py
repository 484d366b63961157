"""The small teaching kernels of notebook 06: a first elementwise kernel and first-order recurrences.

See ``recurrence.py``; the fused selective scan itself lives in ``minimamba.kernels.selective_scan``.
"""

from minimamba.kernels.teaching.recurrence import (
    MAX_BLOCK_L,
    chunked_first_order_scan,
    first_order_scan,
    silu_gate,
)

__all__ = ["MAX_BLOCK_L", "chunked_first_order_scan", "first_order_scan", "silu_gate"]
