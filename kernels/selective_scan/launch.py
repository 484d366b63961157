"""Launching a Triton kernel with less host time, for kernels called again and again with the same
specialisation (the selective scan in a training loop).

``fn[grid](*args, **constexprs)`` binds the arguments, specialises every integer and pointer and looks up
the compiled kernel on every call: about 80 µs of host time for the scan kernels on the H200's host
(``profile.py --host``), as long as the forward kernel itself at L = 512. After a first normal launch,
``launch`` keeps the compiled kernel under a key made of what Triton specialises on (dtypes, 16-byte
alignment of pointers, integers equal to 1 or divisible by 16, the constexprs, num_warps) and calls its
launcher directly (the compiled kernel's own ``kernel[grid](...)`` also builds launch metadata for
hooks on every call; it is used when hooks are set). Under the interpreter, or if the direct call fails
once, every launch takes the normal path.
"""

from __future__ import annotations

import warnings

import torch
import triton

_CACHE: dict = {}
_DIRECT = [True]


class Slot(int):
    """A contiguous fp32 piece of a larger allocation (``base``, from element ``offset``, of ``shape``),
    handed to a kernel as its device address: Triton's launcher takes an int for a pointer, and making
    a tensor view of each piece costs 3-10 µs of host time (the forward keeps its states and layout
    copies in one allocation: ``fwd.scratch``). A tensor view is made only where one is needed: for the
    launch that compiles, and under the interpreter (``view``)."""

    def __new__(cls, base: torch.Tensor, address: int, offset: int, shape: tuple):
        slot = super().__new__(cls, address + 4 * offset)  # base's address, fp32 elements
        slot.base, slot.offset, slot.shape = base, offset, shape
        return slot

    dtype = torch.float32

    def data_ptr(self) -> int:
        return int(self)

    def at(self, offset: int, shape: tuple) -> Slot:
        """The piece ``offset`` elements further on, of ``shape``."""
        return Slot(self.base, int(self) - 4 * self.offset, self.offset + offset, shape)

    def view(self) -> torch.Tensor:
        strides, n = [], 1
        for size in reversed(self.shape):
            strides.append(n)
            n *= size
        return self.base.as_strided(self.shape, strides[::-1], self.offset)


def _tensors(args: list) -> list:
    return [a.view() if isinstance(a, Slot) else a for a in args]


def _key(fn, args, consts, num_warps):
    spec = tuple(
        (a.dtype, a.data_ptr() % 16 == 0)
        if isinstance(a, torch.Tensor)
        else (type(a), a == 1, a % 16 == 0, a >= 2**31 or a < -(2**31))
        for a in args
    )
    return fn, num_warps, tuple(consts.items()), spec


def _stream() -> int:
    """The current CUDA stream of the current device, as Triton's own launcher finds it (but cheaper)."""
    return torch._C._cuda_getCurrentRawStream(torch._C._cuda_getDevice())


def _hooks_set() -> bool:
    """Whether someone (a profiler such as proton) asked Triton to call hooks around launches."""
    knobs = getattr(triton, "knobs", None)
    if knobs is None:  # an older Triton: let its runner decide
        return True
    hook = getattr(knobs.runtime, "launch_enter_hook", None)
    return hook is not None and bool(getattr(hook, "calls", True))


def launch(fn, grid: tuple, args: list, consts: dict, num_warps: int, key=None, **options):
    """``fn[grid](*args, **consts, num_warps=num_warps, **options)``; ``args`` are the parameters before the
    constexprs, in order; ``options`` are compile options (``maxnreg``). Returns the compiled kernel.

    ``args`` may hold :class:`Slot` s where the kernel takes a pointer. ``key``, when given, must determine
    everything Triton specialises on (the caller's shapes, switches, launch sizes, and the dtypes and
    alignment of the tensors it did not allocate itself; and which constexprs: one key, one variant),
    cheaper than working it out from every argument."""
    if not (_DIRECT[0] and args[0].is_cuda):
        return fn[grid](*_tensors(args), **consts, num_warps=num_warps, **options)
    key = (*_key(fn, args, consts, num_warps), tuple(options.items())) if key is None else (fn, key)
    entry = _CACHE.get(key)
    if entry is None:
        if len(_CACHE) > 4096:
            _CACHE.clear()
        kernel = fn[grid](*_tensors(args), **consts, num_warps=num_warps, **options)
        _CACHE[key] = (kernel, tuple(consts[n] for n in fn.arg_names[len(args) :]))
        return kernel
    kernel, tail = entry
    try:
        if _hooks_set():  # the compiled kernel's own runner calls them
            kernel[grid](*_tensors(args), *tail, stream=_stream())
        else:  # what that runner does, minus the hooks: the launcher itself
            kernel.run(grid[0], grid[1], grid[2], _stream(), kernel.function, kernel.packed_metadata,
                       None, None, None, *args, *tail)  # fmt: skip
    except Exception as e:  # another Triton version: fall back for good
        _DIRECT[0] = False
        warnings.warn(f"direct Triton launch unavailable ({e!r}); using the normal launch", stacklevel=2)
        return fn[grid](*_tensors(args), **consts, num_warps=num_warps, **options)
    return kernel
