"""Earlier recurrences beside S6 (notebook 11): linear attention as an RNN, the step Jacobians of an LSTM and of
the selective SSM, and a counter of sequential steps.

Three ways to carry a state from one token to the next:

- **LSTM** (Hochreiter & Schmidhuber 1997; the forget gate is Gers et al. 2000): the gates are computed from
  the previous output h_{t-1}, so the step (h_{t-1}, c_{t-1}) -> (h_t, c_t) is nonlinear in the state. Its
  Jacobian depends on the state (:func:`lstm_step_jacobian`), and h_t cannot be known before h_{t-1}.
- **Linear attention** (Katharopoulos et al. 2020, arXiv 2006.16236), written as an RNN with a matrix state:

      S_t = S_{t-1} + φ(k_t) v_t^T        (d_k, d_v)       z_t = z_{t-1} + φ(k_t)        (d_k,)
      y_t = S_t^T φ(q_t) / (z_t · φ(q_t))                  (normalize=True)
      y_t = S_t^T φ(q_t)                                    (normalize=False)

  with φ(x) = elu(x) + 1 (positive) or φ(x) = x. The state only adds: nothing ever multiplies S_{t-1}, so an
  old key's contribution φ(k_s) v_s^T stays in S_t forever. :func:`linear_attention_recurrent` is that loop,
  :func:`linear_attention_parallel` the same numbers from one masked (L, L) matrix, as in training.
- **S6** (Mamba, Gu & Dao 2023, Algorithm 2), one step for one sequence: h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t
  u_t (:func:`s6_step`). Δ_t and B_t depend on the input, not on h, so the step is affine in h and its
  Jacobian diag(exp(Δ_t A)) does not depend on the state (:func:`s6_step_jacobian`): steps compose into steps
  of the same form, which is what a parallel scan needs (notebook 05).

:class:`CriticalPath` counts the *sequential* steps of a computation: the longest chain of tensor operations
each of which needs the previous one's result (views are free), whatever the width of each operation.

Shapes: q, k (..., L, d_k); v (..., L, d_v); the output y (..., L, d_v); the state S (..., d_k, d_v), z
(..., d_k). Computed in fp32 for fp16/bf16/fp32 inputs and in fp64 for fp64 (the state never lives in a 16-bit
type), returned in the input's dtype.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

__all__ = [
    "FEATURE_MAPS",
    "CriticalPath",
    "critical_path",
    "feature_map",
    "linear_attention_parallel",
    "linear_attention_recurrent",
    "lstm_step_jacobian",
    "s6_step",
    "s6_step_jacobian",
]

#: the feature maps φ of linear attention: "elu+1" (Katharopoulos et al. 2020, positive) and "identity"
FEATURE_MAPS = ("elu+1", "identity")

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _shape(t) -> tuple[int, ...]:
    return tuple(t.shape)


def _check_float(name: str, t) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{name} must be float16, bfloat16, float32 or float64, got {t.dtype}")


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


# ------------------------------------------------------------------------------------------------------
# Linear attention


def feature_map(x: torch.Tensor, kind: str = "elu+1") -> torch.Tensor:
    """φ(x), elementwise: ``"elu+1"`` gives elu(x) + 1 (Katharopoulos et al. 2020), ``"identity"`` gives x.

    elu(x) + 1 is x + 1 for x > 0 and e^x otherwise; it is computed in that form, which stays > 0 down to
    e^x's underflow (x ≈ -87 in fp32), where ``F.elu(x) + 1`` rounds to 0 from x ≈ -17 in fp32.
    """
    _check_float("x", x)
    if kind == "elu+1":
        return torch.where(x > 0, x + 1, torch.exp(x.clamp(max=0)))  # clamp: no inf in the unused branch
    if kind == "identity":
        return x
    raise ValueError(f"kind must be one of {FEATURE_MAPS}, got {kind!r}")


def _check_linear_attention(q, k, v, feature: str, normalize: bool) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        _check_float(name, t)
    if q.dim() < 2:
        raise ValueError(f"q must have shape (..., L, d_k), got {_shape(q)}")
    if _shape(k) != _shape(q):
        raise ValueError(f"k must have the shape of q (..., L, d_k) = {_shape(q)}, got {_shape(k)}")
    if v.dim() != q.dim() or _shape(v)[:-1] != _shape(q)[:-1]:
        want = (*_shape(q)[:-1], "d_v")
        raise ValueError(f"v must have shape (..., L, d_v) = {want}, got {_shape(v)}")
    if q.shape[-2] < 1 or q.shape[-1] < 1 or v.shape[-1] < 1:
        raise ValueError(f"q, k and v need L >= 1 and d_k, d_v >= 1, got q {_shape(q)} and v {_shape(v)}")
    for name, t in (("k", k), ("v", v)):
        if t.device != q.device:
            raise ValueError(f"{name} is on {t.device}, expected the device of q ({q.device})")
    if feature not in FEATURE_MAPS:
        raise ValueError(f"feature must be one of {FEATURE_MAPS}, got {feature!r}")
    if not isinstance(normalize, bool):
        raise TypeError(f"normalize must be a bool, got {type(normalize).__name__}")
    if normalize and feature != "elu+1":
        raise ValueError(
            f"normalize=True divides by φ(q_t) · Σ φ(k_s), which needs a positive feature map ('elu+1'); "
            f"with feature={feature!r} the denominator can be 0 or negative: use normalize=False"
        )


def linear_attention_recurrent(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    feature: str = "elu+1",
    normalize: bool = True,
    return_state: bool = False,
):
    """Causal linear attention as an RNN: one step per position, a (d_k, d_v) matrix state that only adds.

    Args:
        q, k: (..., L, d_k). v: (..., L, d_v). feature: φ, one of :data:`FEATURE_MAPS`. normalize: divide by
        φ(q_t) · z_t (needs ``feature="elu+1"``).
    Returns:
        y: (..., L, d_v) in v's dtype; with ``return_state`` also (S, z): (..., d_k, d_v) and (..., d_k), the
        state after the last position, in the compute dtype (fp32, or fp64 for fp64 inputs).
    """
    _check_linear_attention(q, k, v, feature, normalize)
    ct = _compute_dtype(v)
    fq, fk = feature_map(q.to(ct), feature), feature_map(k.to(ct), feature)  # (..., L, d_k)
    vc = v.to(ct)
    S = fk.new_zeros(*fk.shape[:-2], fk.shape[-1], v.shape[-1])  # (..., d_k, d_v)
    z = fk.new_zeros(*fk.shape[:-2], fk.shape[-1])  # (..., d_k)
    ys = []
    for t in range(q.shape[-2]):
        # S_t = S_{t-1} + φ(k_t) v_t^T: (..., d_k, d_v)
        S = S + torch.einsum("...k,...v->...kv", fk[..., t, :], vc[..., t, :])
        z = z + fk[..., t, :]
        # S_t^T φ(q_t): (..., d_v)
        y = torch.einsum("...k,...kv->...v", fq[..., t, :], S)
        if normalize:
            y = y / (fq[..., t, :] * z).sum(-1, keepdim=True)  # φ(q_t) · z_t: (..., 1)
        ys.append(y)
    y = torch.stack(ys, dim=-2).to(v.dtype)  # (..., L, d_v)
    return (y, (S, z)) if return_state else y


def linear_attention_parallel(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, feature: str = "elu+1", normalize: bool = True
) -> torch.Tensor:
    """The same numbers as :func:`linear_attention_recurrent`, all positions at once (the training form):
    y = (M ⊙ φ(Q) φ(K)^T) V, divided row by row by (M ⊙ φ(Q) φ(K)^T) 1 when ``normalize``, with M the causal
    (lower-triangular) mask. O(L²) work and memory, no loop over L.

    Args and shapes as :func:`linear_attention_recurrent`; returns y: (..., L, d_v) in v's dtype.
    """
    _check_linear_attention(q, k, v, feature, normalize)
    ct = _compute_dtype(v)
    fq, fk = feature_map(q.to(ct), feature), feature_map(k.to(ct), feature)  # (..., L, d_k)
    L = q.shape[-2]
    mask = torch.ones(L, L, dtype=torch.bool, device=q.device).tril()  # (L, L): s <= t
    # φ(q_t) · φ(k_s) for every (t, s), zero above the diagonal: (..., L, L)
    scores = torch.einsum("...tk,...sk->...ts", fq, fk).masked_fill(~mask, 0.0)
    # Σ_s scores[t, s] v_s: (..., L, d_v)
    y = torch.einsum("...ts,...sv->...tv", scores, v.to(ct))
    if normalize:
        y = y / scores.sum(-1, keepdim=True)  # φ(q_t) · z_t: (..., L, 1)
    return y.to(v.dtype)


# ------------------------------------------------------------------------------------------------------
# One step of an LSTM and of S6, and their Jacobians with respect to the state


def lstm_step_jacobian(cell: nn.LSTMCell, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """The Jacobian of one LSTM step with respect to its whole state, at (x_t, h_{t-1}, c_{t-1}).

    The state is (h, c), 2H numbers; the step maps it to (h_t, c_t) = ``cell(x, (h, c))``. Returns the
    (2H, 2H) matrix J with J[i, j] = ∂(h_t, c_t)_i / ∂(h_{t-1}, c_{t-1})_j; its top-left (H, H) block is
    ∂h_t/∂h_{t-1}. Computed by ``torch.autograd.functional.jacobian`` in the cell's dtype.

    Args:
        cell: an ``nn.LSTMCell`` (input_size I, hidden_size H). x: (I,). h, c: (H,), one sequence.
    """
    if not isinstance(cell, nn.LSTMCell):
        raise TypeError(f"cell must be an nn.LSTMCell, got {type(cell).__name__}")
    I, H = cell.input_size, cell.hidden_size
    dtype = cell.weight_hh.dtype
    for name, t, n in (("x", x, I), ("h", h, H), ("c", c, H)):
        _check_float(name, t)
        if _shape(t) != (n,):
            raise ValueError(f"{name} must have shape ({n},) for this cell (one sequence), got {_shape(t)}")
        if t.dtype != dtype:
            raise TypeError(f"{name} must have the cell's dtype {dtype}, got {t.dtype}")

    def step(state: torch.Tensor) -> torch.Tensor:  # (2H,) -> (2H,)
        h_t, c_t = cell(x, (state[:H], state[H:]))
        return torch.cat([h_t, c_t])

    return torch.autograd.functional.jacobian(step, torch.cat([h, c]).detach())  # (2H, 2H)


def _check_s6_step(h, u, delta, A, B) -> None:
    for name, t in (("h", h), ("u", u), ("delta", delta), ("A", A), ("B", B)):
        _check_float(name, t)
    if A.dim() != 2:
        raise ValueError(f"A must have shape (d_inner, N), got {_shape(A)}")
    d_inner, N = _shape(A)
    for name, t, want in (("h", h, (d_inner, N)), ("u", u, (d_inner,)), ("delta", delta, (d_inner,))):
        if _shape(t) != want:
            raise ValueError(
                f"{name} must have shape {want} (A is (d_inner, N) = {_shape(A)}), got {_shape(t)}"
            )
    if _shape(B) != (N,):
        raise ValueError(f"B must have shape (N,) = ({N},), got {_shape(B)}")


def s6_step(
    h: torch.Tensor, u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor
) -> torch.Tensor:
    """One step of the selective scan for one sequence: h_t = exp(Δ_t A) ⊙ h_{t-1} + (Δ_t u_t) B_t.

    Args:
        h: (d_inner, N) the state h_{t-1}. u, delta: (d_inner,) the input and Δ_t (> 0) at t. A: (d_inner, N).
        B: (N,) B_t. Returns h_t: (d_inner, N). Δ_t and B_t come from the input in Mamba, never from h.
    """
    _check_s6_step(h, u, delta, A, B)
    A_bar = torch.exp(delta[:, None] * A)  # exp(Δ_t A): (d_inner, N)
    return A_bar * h + (delta * u)[:, None] * B[None, :]  # (d_inner, N)


def s6_step_jacobian(
    h: torch.Tensor, u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor
) -> torch.Tensor:
    """The Jacobian of :func:`s6_step` with respect to the state h_{t-1}, by autograd.

    Returns a (d_inner·N, d_inner·N) matrix over the flattened state (row-major, channel by channel); it is
    diag(exp(Δ_t A)) whatever h is. Arguments as :func:`s6_step`.
    """
    _check_s6_step(h, u, delta, A, B)
    shape = _shape(h)

    def step(flat: torch.Tensor) -> torch.Tensor:  # (d_inner·N,) -> (d_inner·N,)
        return s6_step(flat.reshape(shape), u, delta, A, B).reshape(-1)

    return torch.autograd.functional.jacobian(step, h.detach().reshape(-1))


# ------------------------------------------------------------------------------------------------------
# Counting sequential steps


class CriticalPath(TorchDispatchMode):
    """Inside ``with CriticalPath() as cp:``, every tensor operation PyTorch runs is recorded with its depth:
    1 + the largest depth among the tensors it reads. ``cp.depth`` is then the length of the longest chain of
    operations each of which needed the previous one's result — the number of steps no amount of parallel
    hardware can run side by side. ``cp.ops`` counts all the operations.

    Depth is kept per storage, so a view (``select``, ``transpose``, ``view``: the output shares its input's
    storage) costs nothing and an in-place update (``mul_``, ``copy_`` into a slice) deepens the whole
    storage. Tensors made before the block have depth 0. The count is of operations as PyTorch dispatches them:
    a fused kernel (oneDNN's LSTM in fp32 on a CPU) counts as one operation even when it loops inside, so count
    in float64, where PyTorch runs its LSTM one visible operation at a time.
    """

    def __init__(self) -> None:
        super().__init__()
        self._depth: dict[int, int] = {}  # storage address -> depth of its latest content
        self.depth = 0
        self.ops = 0

    @staticmethod
    def _key(t: torch.Tensor) -> int:
        return t.untyped_storage().data_ptr()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        outputs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        read = {self._key(t) for t in inputs}
        deepest = max((self._depth.get(key, 0) for key in read), default=0)
        mutates = func._schema.is_mutable  # in place or out=: writes into one of its inputs
        for t in outputs:
            key = self._key(t)
            if key in read and not mutates:
                continue  # a view of an input: no computation
            self._depth[key] = deepest + 1  # a fresh result, or new content of an input written in place
            self.depth = max(self.depth, deepest + 1)
        self.ops += 1
        return out


def critical_path(fn, *args, **kwargs) -> int:
    """The depth of ``fn(*args, **kwargs)`` under :class:`CriticalPath`, run without autograd."""
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    with torch.no_grad(), CriticalPath() as cp:
        fn(*args, **kwargs)
    return cp.depth
