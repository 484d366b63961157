"""The Mamba block's fast path for a whole sequence (training), behind the same interface as the readable one.

``MambaMixer.forward`` reads as the paper draws the block (``minimamba/block.py``); on a GPU it runs
``MambaMixer._forward_fused`` instead, the same arithmetic with fewer passes over memory and fewer saved
activations:

- the causal conv and its SiLU are one Triton kernel (``minimamba.kernels.causal_conv1d``), forward and
  backward;
- the conv and x_proj are one autograd node, :func:`conv_x_proj`, which saves the conv's *input* x (the
  output of ``in_proj``'s first half; ``in_proj``'s own backward needs nothing of it) and recomputes the
  conv output u in the backward; and the scan's own saved u and Δ are replaced by how to recompute them
  (:func:`recomputed`).
  In PyTorch, autograd keeps the conv's padded output (for SiLU), u (for the scan), a (batch·L, d_inner)
  copy of u (for x_proj's weight gradient) and Δ: four (batch, d_inner, L) tensors per layer that this
  path recomputes (a conv and a rank-R matmul; ``tests/test_fused_block.py`` measures the memory held on
  a GPU);
- every projection works in the (batch, ·, L) layout the conv and the scan read, one batched matrix product
  per weight (:func:`weight_matmul`, :func:`weight_matmul_split`): in_proj writes x and z, x_proj writes
  B, C and dt, dt_proj writes Δ, each contiguous along L, and out_proj reads y where the scan wrote it and
  writes the block's (batch, L, d_model) output. No activation is copied into another layout, forward or
  backward (``tests/test_fused_block.py`` counts the copies), and the backward writes each input gradient
  in its input's layout. dt_proj's bias goes to the scan as ``delta_bias`` (added in fp32 there);
- the residual add + RMSNorm of ``Block`` is one Triton kernel, forward and backward
  (``minimamba.kernels.rmsnorm.add_rms_norm_fn``).

Under ``torch.compile`` the conv is the custom op ``minimamba::causal_conv1d_fwd`` followed by a plain
matmul (no autograd.Function to trace): the compiler's partitioner chooses what to save and recompute.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "conv_x_proj",
    "conv_x_proj_ref",
    "recompute_conv",
    "recomputed",
    "saved_tensors_hooks",
    "weight_matmul",
    "weight_matmul_split",
]


_ENCLOSING: contextvars.ContextVar[tuple[Callable, Callable] | None] = contextvars.ContextVar(
    "minimamba_saved_tensors_hooks", default=None
)


@contextlib.contextmanager
def saved_tensors_hooks(pack: Callable, unpack: Callable):
    """``torch.autograd.graph.saved_tensors_hooks(pack, unpack)`` that a :func:`recomputed` opened inside
    passes on to. PyTorch applies only the innermost pair of hooks: a tensor saved inside a ``recomputed``
    context reaches ``pack`` only through ``recomputed`` (``minimamba.memory.saved_for_backward`` counts
    through it)."""
    token = _ENCLOSING.set((pack, unpack))
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
            yield
    finally:
        _ENCLOSING.reset(token)


@contextlib.contextmanager
def recomputed(t: Tensor, recompute: Callable[[], Tensor]):
    """Inside this context, autograd saves ``t`` (same memory, shape, strides and dtype) as ``recompute``,
    and the backward calls ``recompute()`` (without grad) when it needs the values: ``t``'s memory is freed
    once the forward no longer holds it. ``recompute`` must give the same values and must not hold ``t``.

    Other saved tensors go to the enclosing ``recomputed`` or :func:`saved_tensors_hooks` if there is one,
    and are stored as usual otherwise: ``recomputed(u, ...)`` around ``recomputed(delta, ...)`` recomputes
    both. (``torch.autograd.graph.saved_tensors_hooks``: the pack hook runs for every tensor an operation
    saves, the unpack hook when the backward reads it; only the innermost pair runs, hence the hand-over.)
    """
    key = (t.data_ptr(), t.shape, t.stride(), t.dtype, t.device)  # not t itself: that would keep it alive
    outer = _ENCLOSING.get()

    def pack(saved: Tensor):
        if (saved.data_ptr(), saved.shape, saved.stride(), saved.dtype, saved.device) == key:
            return _Recipe(recompute, key[4].type)
        return saved if outer is None else outer[0](saved)

    def unpack(packed):
        if isinstance(packed, _Recipe):  # this context's or an enclosing one's
            return packed.run()
        return packed if outer is None else outer[1](packed)

    with saved_tensors_hooks(pack, unpack):
        yield


class _Recipe:
    """A saved tensor stored as the function that recomputes it (on a device of type ``device_type``)."""

    __slots__ = ("device_type", "recompute")

    def __init__(self, recompute: Callable[[], Tensor], device_type: str):
        self.recompute, self.device_type = recompute, device_type

    def run(self) -> Tensor:
        # the dtypes the recipe names, whatever autocast says in the backward
        with torch.no_grad(), torch.autocast(self.device_type, enabled=False):
            return self.recompute()


def recompute_conv(x: Tensor, conv_w: Tensor, conv_b: Tensor | None) -> Callable[[], Tensor]:
    """A recipe for :func:`recomputed`: u = SiLU(conv(x)) by the same kernel as :func:`conv_x_proj`'s."""
    x, conv_w = x.detach(), conv_w.detach()
    conv_b = None if conv_b is None else conv_b.detach()

    def recompute() -> Tensor:
        from minimamba.kernels.causal_conv1d import causal_conv1d_fwd  # noqa: PLC0415

        return causal_conv1d_fwd(x, conv_w, conv_b, True)

    return recompute


class _Project(torch.autograd.Function):
    """Row blocks of one weight times the same activations, each product one batched GEMM over the weight
    expanded along the batch; see :func:`weight_matmul` and :func:`weight_matmul_split`.

    The backward writes the weight's gradient in the weight's dtype, one block of rows per output, and the
    input's gradient in the input's memory layout, the blocks' shares accumulated by the GEMMs themselves
    (``baddbmm``): no zero-filled gradient of a weight slice, no separate add, no transposed copy."""

    @staticmethod
    def forward(ctx, w, x, sizes, out_layout):
        wc, batch = w.to(x.dtype), x.shape[0]
        outs, start = [], 0
        for k in sizes:
            wk = wc[start : start + k]
            if out_layout == "BLK":  # xᵀ wᵀ: (batch, L, k), contiguous
                outs.append(torch.bmm(x.transpose(1, 2), wk.t().expand(batch, -1, -1)))
            else:  # w x: (batch, k, L), contiguous
                outs.append(torch.bmm(wk.expand(batch, -1, -1), x))
            start += k
        ctx.save_for_backward(w, x)
        ctx.sizes, ctx.out_layout = sizes, out_layout
        return tuple(outs)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *douts):
        w, x = ctx.saved_tensors
        wc, batch = w.to(x.dtype), x.shape[0]
        x_rows_last = x.stride(1) == 1 and x.stride(2) != 1  # x is a transposed view of (batch, L, D)
        dx, dws, start = None, [], 0
        for k, do in zip(ctx.sizes, douts, strict=True):
            wk = wc[start : start + k]
            start += k
            if do is None:  # an output the loss does not use
                if ctx.needs_input_grad[0]:
                    dws.append(w.new_zeros(k, w.shape[1]))
                continue
            do = do.to(x.dtype)
            do_kl = do.transpose(1, 2) if ctx.out_layout == "BLK" else do  # (batch, k, L), a view
            # Σ over batch and time of do xᵀ: batched GEMMs, then the sum over the batch, in w's dtype
            if ctx.needs_input_grad[0]:
                dws.append(torch.bmm(do_kl, x.transpose(1, 2)).sum(0, dtype=w.dtype))
            if not ctx.needs_input_grad[1]:
                continue
            if x_rows_last:  # dxᵀ = Σ doᵀ w_k: (batch, L, D), the layout of x's own tensor
                a, b = do_kl.transpose(1, 2), wk.expand(batch, -1, -1)
            else:  # dx = Σ w_kᵀ do: (batch, D, L)
                a, b = wk.t().expand(batch, -1, -1), do_kl
            dx = torch.bmm(a, b) if dx is None else dx.baddbmm_(a, b)
        if dx is not None and x_rows_last:
            dx = dx.transpose(1, 2)
        dw = None if not dws else dws[0] if len(dws) == 1 else torch.cat(dws)
        return dw, dx, None, None


def _projection_args(w, x, out_layout) -> tuple[Tensor, str]:
    if not isinstance(w, Tensor) or w.dim() != 2:
        raise ValueError(f"w must be a (K, D) weight, got {getattr(w, 'shape', type(w).__name__)}")
    if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[1] != w.shape[1]:
        raise ValueError(
            f"x must be (batch, D = {w.shape[1]}, L), got {getattr(x, 'shape', type(x).__name__)}"
        )
    if out_layout not in ("BKL", "BLK"):
        raise ValueError(f"out_layout must be 'BKL' or 'BLK', got {out_layout!r}")
    device = x.device.type
    if torch.is_autocast_enabled(device):
        x = x.to(torch.get_autocast_dtype(device))
    return x, device


def weight_matmul(w: Tensor, x: Tensor, out_layout: str = "BKL") -> Tensor:
    """``w @ x`` for a weight w (K, D) and activations x (batch, D, L) -> (batch, K, L), contiguous; with
    ``out_layout="BLK"`` its transpose, (batch, L, K), contiguous.

    One batched GEMM over the weight expanded along the batch (stride 0, no copy), which reads x in either
    layout, contiguous or a transposed view of a (batch, L, D) tensor, and writes the output in the layout
    asked for. ``torch.matmul(w, x)`` instead folds the batch into the rows of one GEMM: it copies x, and
    the output, in transposed order, forward and backward. The backward gives x's gradient in x's own
    layout. Under autocast, w and x are cast to autocast's dtype first, as ``F.linear`` would be; the
    product then runs in that dtype, and w's gradient comes back in w's dtype."""
    x, device = _projection_args(w, x, out_layout)
    with torch.autocast(device, enabled=False):
        return _Project.apply(w, x, (w.shape[0],), out_layout)[0]


def weight_matmul_split(w: Tensor, x: Tensor, sizes: tuple[int, ...]) -> tuple[Tensor, ...]:
    """The row blocks of ``weight_matmul(w, x)``, of ``sizes`` rows each, as separate contiguous (batch,
    k, L) tensors (in_proj's x and z): one GEMM per block, and in the backward one weight gradient
    assembled from the blocks' rows and one input gradient accumulated over them."""
    if not isinstance(sizes, tuple) or not sizes or not all(isinstance(k, int) and k > 0 for k in sizes):
        raise ValueError(f"sizes must be a tuple of positive ints, got {sizes!r}")
    if isinstance(w, Tensor) and w.dim() == 2 and sum(sizes) != w.shape[0]:
        raise ValueError(f"sizes must add up to w's {w.shape[0]} rows, got {sizes} (sum {sum(sizes)})")
    x, device = _projection_args(w, x, "BKL")
    with torch.autocast(device, enabled=False):
        return _Project.apply(w, x, sizes, "BKL")


class _ConvXProj(torch.autograd.Function):
    """u = SiLU(conv(x) + bias), x_dbl = W_x @ u; saves x, the conv's taps and W_x, never u."""

    @staticmethod
    def forward(ctx, x, conv_w, conv_b, xproj_w):
        from minimamba.kernels.causal_conv1d import causal_conv1d_fwd  # noqa: PLC0415

        u = causal_conv1d_fwd(x, conv_w, conv_b, True)  # (batch, d_inner, L), contiguous, x's dtype
        with torch.autocast(x.device.type, enabled=False):  # dtypes as written: autocast's would be the same
            x_dbl = weight_matmul(xproj_w.to(u.dtype), u)  # (batch, R + 2N, L)
        ctx.save_for_backward(x, conv_w, conv_b, xproj_w)
        return u, x_dbl

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, du, dx_dbl):
        from minimamba.kernels.causal_conv1d import causal_conv1d_bwd, causal_conv1d_fwd  # noqa: PLC0415

        x, conv_w, conv_b, xproj_w = ctx.saved_tensors
        u = causal_conv1d_fwd(x, conv_w, conv_b, True)  # recomputed: the same kernel, the same values
        w, dx_dbl = xproj_w.to(u.dtype), dx_dbl.to(u.dtype)
        # Σ over batch and time of dx_dbl uᵀ: batched GEMMs reading u transposed in place, then a sum over
        # the batch of (batch, R + 2N, d_inner) partial products (small next to u)
        dxproj_w = torch.bmm(dx_dbl, u.transpose(1, 2)).sum(0).to(xproj_w.dtype)
        wt = w.t().expand(u.shape[0], -1, -1)
        if du.dtype == u.dtype:  # (batch, d_inner, L): the scan's share plus x_proj's, added by the GEMM
            du = torch.baddbmm(du, wt, dx_dbl)
        else:
            du = torch.bmm(wt, dx_dbl) + du
        dx, dconv_w, dconv_b = causal_conv1d_bwd(x, conv_w, conv_b, du, True)
        return dx, dconv_w, dconv_b, dxproj_w


def conv_x_proj(x: Tensor, conv_w: Tensor, conv_b: Tensor | None, xproj_w: Tensor) -> tuple[Tensor, Tensor]:
    """x (batch, d_inner, L, any strides), conv taps (d_inner, d_conv), bias (d_inner,) or None, x_proj's
    weight (R + 2N, d_inner) -> (u = SiLU(causal conv of x) (batch, d_inner, L) contiguous, x_dbl = W_x @ u
    (batch, R + 2N, L)), both in x's dtype; the same values as :func:`conv_x_proj_ref`. The backward
    recomputes u from x instead of storing it."""
    if not isinstance(x, Tensor) or x.dim() != 3:
        raise ValueError(
            f"x must be a (batch, d_inner, L) tensor, got {getattr(x, 'shape', type(x).__name__)}"
        )
    if not isinstance(xproj_w, Tensor) or xproj_w.dim() != 2 or xproj_w.shape[1] != x.shape[1]:
        raise ValueError(
            f"xproj_w must be (R + 2N, d_inner = {x.shape[1]}), got {getattr(xproj_w, 'shape', type(xproj_w).__name__)}"
        )
    if torch.compiler.is_compiling():
        from minimamba.kernels.causal_conv1d import causal_conv1d_fn  # noqa: PLC0415

        u = causal_conv1d_fn(x, conv_w, conv_b, True)
        return u, weight_matmul(xproj_w.to(u.dtype), u)
    return _ConvXProj.apply(x, conv_w, conv_b, xproj_w)


def conv_x_proj_ref(
    x: Tensor, conv_w: Tensor, conv_b: Tensor | None, xproj_w: Tensor
) -> tuple[Tensor, Tensor]:
    """The same in PyTorch (autograd stores what it stores): the reference for :func:`conv_x_proj`."""
    from minimamba.kernels.causal_conv1d import causal_conv1d_ref  # noqa: PLC0415

    u = causal_conv1d_ref(x, conv_w, conv_b, True)
    return u, torch.matmul(xproj_w.to(u.dtype), u)
