"""What a forward keeps alive for its backward: the activations autograd saves, by storage.

Training holds, between the forward and the backward, every tensor an operation saved to compute its
gradient. Mamba §3.3 ("Hardware-aware Algorithm") keeps the big intermediates out of that set and recomputes
them in the backward; :func:`saved_for_backward` lists what is left, so that the readable block and the fused
one (``minimamba.fused``) can be compared on any device.

The count runs the forward under saved-tensor hooks (``torch.autograd.graph.saved_tensors_hooks``, through
:func:`minimamba.fused.saved_tensors_hooks` so that a :func:`minimamba.fused.recomputed` opened inside hands
on the tensors it does not replace). A tensor that ``recomputed`` replaces by its recipe is not kept and not
counted. Each storage is counted once, whole (in the readable block x and z, two views of ``in_proj``'s
output, are one storage).

Time has a memory side too: a tensor copied into another layout is read and written once more.
:func:`big_copies` lists the copies of large tensors that PyTorch makes while a function runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from minimamba.fused import saved_tensors_hooks

__all__ = ["SavedActivation", "SavedForBackward", "big_copies", "saved_for_backward"]


@dataclass(frozen=True)
class SavedActivation:
    """One storage autograd keeps for the backward: the shape and dtype of the first tensor saved from it,
    its size in bytes (the whole storage), how many saved tensors use it, and the autograd node that made
    the first one (``""`` for a tensor made without grad)."""

    shape: tuple[int, ...]
    dtype: torch.dtype
    nbytes: int
    uses: int
    made_by: str


@dataclass(frozen=True)
class SavedForBackward:
    """The forward's output and what it keeps for the backward (``total_bytes`` = Σ ``nbytes``)."""

    output: Any
    saved: list[SavedActivation]
    total_bytes: int


def _storage_key(t: Tensor) -> tuple[str, int]:
    return str(t.device), t.untyped_storage().data_ptr()


def _tensors(obj: Any) -> list[Tensor]:
    """The tensors in an argument: a tensor, or a list / tuple / dict of them (one level)."""
    if isinstance(obj, Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for t in obj if isinstance(t, Tensor)]
    if isinstance(obj, dict):
        return [t for t in obj.values() if isinstance(t, Tensor)]
    return []


def saved_for_backward(
    fn: Callable[..., Any],
    *args: Any,
    exclude: Iterable[Tensor] = (),
    exclude_inputs: bool = True,
    **kwargs: Any,
) -> SavedForBackward:
    """Run ``fn(*args, **kwargs)`` with grad enabled and return its output and what autograd keeps for the
    backward, one :class:`SavedActivation` per storage, in the order first saved.

    Not counted: parameters of ``fn`` when it is an ``nn.Module``, any ``nn.Parameter`` it saves or a view
    of one, the tensors in ``exclude``, the tensors of ``args`` / ``kwargs`` (a tensor or a list, tuple or
    dict of them) when ``exclude_inputs``, and every tensor sharing a storage with one of these (views,
    ``.t()``, a no-op ``.to()``). Tensors held only by a recompute closure of
    :func:`minimamba.fused.recomputed` are not seen, nor tensors an ``autograd.Function`` keeps as attributes
    of its ``ctx`` instead of through ``save_for_backward``.
    The forward runs once, as usual: its output is the one returned.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable (a function or an nn.Module), got {type(fn).__name__}")
    if isinstance(exclude, Tensor):
        raise TypeError("exclude must be an iterable of tensors, got a single Tensor: wrap it in a tuple")
    exclude = list(exclude)
    for i, t in enumerate(exclude):
        if not isinstance(t, Tensor):
            raise TypeError(f"exclude must hold tensors, got {type(t).__name__} at position {i}")
    if not isinstance(exclude_inputs, bool):
        raise TypeError(f"exclude_inputs must be a bool, got {type(exclude_inputs).__name__}")

    skip = {_storage_key(t) for t in exclude}
    if isinstance(fn, nn.Module):
        skip |= {_storage_key(p) for p in fn.parameters()}
    if exclude_inputs:
        for a in (*args, *kwargs.values()):
            skip |= {_storage_key(t) for t in _tensors(a)}

    found: dict[tuple[str, int], list] = {}  # storage -> [shape, dtype, nbytes, uses, made_by]

    def pack(t: Tensor) -> Tensor:
        key = _storage_key(t)
        if isinstance(t, nn.Parameter) or isinstance(t._base, nn.Parameter):  # and every view of it
            skip.add(key)
            found.pop(key, None)
        if key in skip:
            return t
        if key in found:
            found[key][3] += 1
        else:
            made_by = "" if t.grad_fn is None else type(t.grad_fn).__name__
            found[key] = [tuple(t.shape), t.dtype, t.untyped_storage().nbytes(), 1, made_by]
        return t

    with torch.enable_grad(), saved_tensors_hooks(pack, lambda t: t):
        output = fn(*args, **kwargs)
    saved = [SavedActivation(*row) for row in found.values()]
    return SavedForBackward(output, saved, sum(s.nbytes for s in saved))


class _CopySpy(torch.utils._python_dispatch.TorchDispatchMode):
    def __init__(self, numel: int):
        super().__init__()
        self.numel, self.copies = numel, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        t = args[0] if args and isinstance(args[0], Tensor) else None
        # two dimensions or more: Triton's CPU interpreter copies flat buffers to and from the kernels it runs
        if str(func).startswith(("aten.clone", "aten.copy_", "aten._to_copy")) and t is not None:
            if t.dim() >= 2 and t.numel() >= self.numel:
                self.copies.append((str(func).removeprefix("aten."), tuple(t.shape)))
        return func(*args, **(kwargs or {}))


def big_copies(fn: Callable[[], Any], numel: int) -> list[tuple[str, tuple[int, ...]]]:
    """Run ``fn()`` (a forward, a backward, both) and list every copy PyTorch dispatches of a tensor of at
    least ``numel`` elements and two dimensions: (operator, shape of the source), in order. Copies into
    another layout (``contiguous()`` of a transposed view, a reshape that cannot be a view) and casts count;
    a ``TorchDispatchMode`` sees every operator below autograd, forward and backward alike."""
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    if isinstance(numel, bool) or not isinstance(numel, int) or numel < 1:
        raise ValueError(f"numel must be an int >= 1, got {numel!r}")
    spy = _CopySpy(numel)
    with spy:
        fn()
    return spy.copies
