"""Three small Triton kernels that teach the pieces of the fused selective scan (notebook 06).

1. ``silu_gate(x, z)``: y = x · silu(z), elementwise. The first kernel: *programs* (one per block of
   ``BLOCK`` elements), *blocks* (``tl.arange`` offsets) and *masks* (the last block runs past the end).

2. ``first_order_scan(a, b)``: for every row r of the (rows, L) tensors a and b, the linear recurrence

       h_t = a_t · h_{t-1} + b_t,        h_{-1} = h0 (zeros by default),

   which is the selective scan for one channel d and one state n (a_t = exp(Δ_t A), b_t = Δ_t B_t u_t,
   Mamba §2, equation (2a); Algorithm 2 in §3.2). One program per row; the whole row sits in one block
   and is scanned by ``tl.associative_scan`` with the operator on pairs (a, b)

       (a_1, b_1) ∘ (a_2, b_2) = (a_1 a_2,  a_2 b_1 + b_2).

   Composing step 1 then step 2 maps h to a_2 (a_1 h + b_1) + b_2, so the pair (a_1 a_2, a_2 b_1 + b_2)
   is the combined step: the left operand is the *earlier* one. The operator is associative but not
   commutative, so the order of its operands matters.

3. ``chunked_first_order_scan(a, b, h0)``: the same recurrence for any L, one chunk of ``BLOCK_L`` steps at
   a time, with the state carried from one chunk to the next in a register: inside a chunk starting at
   step s the scan gives (A_t, H_t) = (a_s ⋯ a_t, the state started from 0), and the true state is
   h_t = H_t + A_t · h_carry. This is the loop of the fused selective-scan kernel.

Both scans also run backwards (``reverse=True``: h_t = a_t · h_{t+1} + b_t), which is what the backward
pass needs. They do it by reversing the load and store offsets, not with ``tl.associative_scan(...,
reverse=True)``, which has given wrong results on some GPUs and Triton versions (triton issues 4362, 8412).

Without a GPU, ``import minimamba`` (which always runs before this module, a part of ``minimamba.kernels``)
switches Triton to its CPU interpreter (``TRITON_INTERPRET=1``) and the kernels run on CPU tensors, slowly
(about 150–200 µs per scanned element): keep the sizes tiny there.
Naming: ``p_`` pointers, ``b_`` blocks (values in registers), ``m_`` masks, ``o_`` offsets, ``i_`` ids.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

__all__ = ["MAX_BLOCK_L", "chunked_first_order_scan", "first_order_scan", "silu_gate"]

#: The longest row ``first_order_scan`` keeps in one block; longer rows need the chunked kernel.
#: (A block is held in registers; very large blocks spill and take minutes to compile.)
MAX_BLOCK_L = 16384

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


# ------------------------------------------------------------------------------------------------------
# 1. The first kernel: programs, blocks and masks.


@triton.jit
def silu_gate_kernel(
    p_x,  # pointer to x, n elements (contiguous)
    p_z,  # pointer to z, n elements
    p_y,  # pointer to the output y, n elements
    n,  # number of elements
    BLOCK: tl.constexpr,  # elements per program (a power of 2, fixed at compile time)
):
    i_p = tl.program_id(0)  # which program am I? programs 0, 1, ..., cdiv(n, BLOCK) - 1 run in parallel
    o_x = i_p * BLOCK + tl.arange(0, BLOCK)  # the BLOCK element offsets this program handles
    m_x = o_x < n  # the last program runs past the end: those lanes must neither load nor store
    b_x = tl.load(p_x + o_x, mask=m_x, other=0.0).to(tl.float32)
    b_z = tl.load(p_z + o_x, mask=m_x, other=0.0).to(tl.float32)
    b_y = b_x * b_z * tl.sigmoid(b_z)  # x · silu(z), silu(z) = z · sigmoid(z), computed in fp32
    tl.store(p_y + o_x, b_y.to(p_y.dtype.element_ty), mask=m_x)


# ------------------------------------------------------------------------------------------------------
# 2. A first-order recurrence, one row in one block, with tl.associative_scan.


@triton.jit
def first_order_combine(a_1, b_1, a_2, b_2):
    """(a_1, b_1) ∘ (a_2, b_2) = (a_1 a_2, a_2 b_1 + b_2): step 1 (earlier, left) then step 2."""
    return a_1 * a_2, a_2 * b_1 + b_2


@triton.jit
def first_order_scan_kernel(
    p_a,  # pointer to a, (rows, L) row-contiguous: the decay of each step
    p_b,  # pointer to b, (rows, L): the input of each step
    p_h0,  # pointer to h0, (rows,): the state before the first step
    p_h,  # pointer to the output h, (rows, L)
    L,  # steps per row
    BLOCK_L: tl.constexpr,  # a power of 2 >= L: the whole row is one block
    REVERSE: tl.constexpr,  # False: h_t = a_t h_{t-1} + b_t; True: h_t = a_t h_{t+1} + b_t
):
    i_r = tl.program_id(0)  # one program per row
    o_s = tl.arange(0, BLOCK_L)  # step number in scan order (0 = the first step taken)
    m_s = o_s < L  # lanes past the end of the row
    o_t = (L - 1 - o_s) if REVERSE else o_s  # the time index of each step: a reverse scan reads backwards
    p_row = i_r * L + o_t
    # Masked lanes get the identity of the operator, (a, b) = (1, 0): they leave the state unchanged.
    b_a = tl.load(p_a + p_row, mask=m_s, other=1.0)
    b_b = tl.load(p_b + p_row, mask=m_s, other=0.0)
    # Fold h0 into the first step: h_0 = a_0 h0 + b_0, so b_0 <- b_0 + a_0 h0.
    b_h0 = tl.load(p_h0 + i_r)
    b_b = tl.where(o_s == 0, b_b + b_a * b_h0, b_b)
    # Inclusive scan of the pairs: lane s holds (a_0 ⋯ a_s, h_s).
    _, b_h = tl.associative_scan((b_a, b_b), axis=0, combine_fn=first_order_combine)
    tl.store(p_h + p_row, b_h, mask=m_s)


# ------------------------------------------------------------------------------------------------------
# 3. Any length: chunk by chunk, with the state carried in a register.


@triton.jit
def chunked_first_order_scan_kernel(
    p_a,  # pointer to a, (rows, L) row-contiguous
    p_b,  # pointer to b, (rows, L)
    p_h0,  # pointer to h0, (rows,)
    p_h,  # pointer to the output h, (rows, L)
    L,  # steps per row (any length)
    BLOCK_L: tl.constexpr,  # steps per chunk (a power of 2)
    REVERSE: tl.constexpr,  # False: h_t = a_t h_{t-1} + b_t; True: h_t = a_t h_{t+1} + b_t
):
    i_r = tl.program_id(0)  # one program per row; it walks the row chunk by chunk
    h = tl.load(p_h0 + i_r)  # the carried state: a scalar in a register, never written to memory
    for i_c in range(0, tl.cdiv(L, BLOCK_L)):
        o_s = i_c * BLOCK_L + tl.arange(0, BLOCK_L)  # step numbers of this chunk, in scan order
        m_s = o_s < L
        o_t = (L - 1 - o_s) if REVERSE else o_s
        p_row = i_r * L + o_t
        b_a = tl.load(p_a + p_row, mask=m_s, other=1.0)  # identity (1, 0) past the end
        b_b = tl.load(p_b + p_row, mask=m_s, other=0.0)
        # Within the chunk, from a zero state: lane s holds (A_s, H_s) = (a_0 ⋯ a_s, state from 0).
        b_A, b_H = tl.associative_scan((b_a, b_b), axis=0, combine_fn=first_order_combine)
        # The carried state enters every step through the product of the decays since the chunk start.
        b_h = b_H + b_A * h
        tl.store(p_h + p_row, b_h, mask=m_s)
        # The last lane holds the state after the chunk (masked lanes are the identity, so they kept it).
        h = tl.sum(tl.where(tl.arange(0, BLOCK_L) == BLOCK_L - 1, b_h, 0.0), axis=0)


# ------------------------------------------------------------------------------------------------------
# Wrappers: check the input, allocate, launch.


def _check_float_tensor(name: str, t) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in _FLOATS:
        raise TypeError(f"{name} must be float16, bfloat16, float32 or float64, got {t.dtype}")


def _check_scan_inputs(a, b, h0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate (a, b, h0); return contiguous a, b, h0 in the compute dtype."""
    _check_float_tensor("a", a)
    _check_float_tensor("b", b)
    if a.dim() != 2:
        raise ValueError(f"a must have shape (rows, L), got shape {tuple(a.shape)} ({a.dim()} dimensions)")
    if b.shape != a.shape:
        raise ValueError(f"b must have the shape of a (rows, L) = {tuple(a.shape)}, got {tuple(b.shape)}")
    if b.device != a.device:
        raise ValueError(f"b is on {b.device}, expected the device of a ({a.device})")
    rows = a.shape[0]
    if h0 is not None:
        _check_float_tensor("h0", h0)
        if tuple(h0.shape) != (rows,):
            raise ValueError(f"h0 must have shape (rows,) = {(rows,)}, got {tuple(h0.shape)}")
        if h0.device != a.device:
            raise ValueError(f"h0 is on {h0.device}, expected the device of a ({a.device})")
    # The state lives in fp32 (fp64 when given fp64), whatever the input dtype.
    ct = torch.float64 if torch.float64 in (a.dtype, b.dtype) else torch.float32
    h0 = a.new_zeros(rows, dtype=ct) if h0 is None else h0.to(ct).contiguous()
    return a.to(ct).contiguous(), b.to(ct).contiguous(), h0


def _check_block(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1 or value & (value - 1) or value > MAX_BLOCK_L:
        raise ValueError(f"{name} must be a power of 2 between 1 and {MAX_BLOCK_L}, got {value}")


def silu_gate(x: torch.Tensor, z: torch.Tensor, BLOCK: int = 1024) -> torch.Tensor:
    """y = x · silu(z) elementwise (Mamba's output gate), computed in fp32 and returned in x's dtype.

    Args:
        x, z: tensors of the same shape, dtype and device (any shape; copied to contiguous if needed).
        BLOCK: elements per program, a power of 2.
    """
    _check_float_tensor("x", x)
    _check_float_tensor("z", z)
    if z.shape != x.shape:
        raise ValueError(f"z must have the shape of x {tuple(x.shape)}, got {tuple(z.shape)}")
    if z.dtype != x.dtype:
        raise TypeError(f"z must have the dtype of x ({x.dtype}), got {z.dtype}")
    if z.device != x.device:
        raise ValueError(f"z is on {z.device}, expected the device of x ({x.device})")
    _check_block("BLOCK", BLOCK)
    x, z = x.contiguous(), z.contiguous()
    y = torch.empty_like(x)
    n = x.numel()
    if n:
        grid = (triton.cdiv(n, BLOCK),)  # one program per block of BLOCK elements
        silu_gate_kernel[grid](x, z, y, n, BLOCK=BLOCK)
    return y


def first_order_scan(
    a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None, reverse: bool = False
) -> torch.Tensor:
    """h_t = a_t h_{t-1} + b_t along each row (``reverse``: h_t = a_t h_{t+1} + b_t), one block per row.

    Args:
        a, b: (rows, L), same device; L at most ``MAX_BLOCK_L`` (longer: ``chunked_first_order_scan``).
        h0: (rows,) the state before the first step (zeros when None).
        reverse: scan from t = L-1 down to 0.
    Returns:
        h: (rows, L) in fp32 (fp64 when a or b is fp64).
    """
    a, b, h0 = _check_scan_inputs(a, b, h0)
    rows, L = a.shape
    if L > MAX_BLOCK_L:
        raise ValueError(
            f"a has L = {L} steps, more than one block holds (MAX_BLOCK_L = {MAX_BLOCK_L}); "
            "use chunked_first_order_scan"
        )
    h = torch.empty_like(a)
    if rows and L:
        first_order_scan_kernel[(rows,)](a, b, h0, h, L, BLOCK_L=triton.next_power_of_2(L), REVERSE=reverse)
    return h


def chunked_first_order_scan(
    a: torch.Tensor,
    b: torch.Tensor,
    h0: torch.Tensor | None = None,
    BLOCK_L: int = 64,
    reverse: bool = False,
) -> torch.Tensor:
    """The recurrence of :func:`first_order_scan` for any L, ``BLOCK_L`` steps at a time.

    Args:
        a, b: (rows, L), same device, any L.
        h0: (rows,) the state before the first step (zeros when None).
        BLOCK_L: steps per chunk, a power of 2.
        reverse: scan from t = L-1 down to 0.
    Returns:
        h: (rows, L) in fp32 (fp64 when a or b is fp64).
    """
    a, b, h0 = _check_scan_inputs(a, b, h0)
    _check_block("BLOCK_L", BLOCK_L)
    rows, L = a.shape
    h = torch.empty_like(a)
    if rows and L:
        chunked_first_order_scan_kernel[(rows,)](a, b, h0, h, L, BLOCK_L=BLOCK_L, REVERSE=reverse)
    return h
