"""The host-time layer: how the scan's kernels are launched, and where their scratch memory comes from.

A short scan is limited by the host, not the GPU: at (8, 1536, 512, 16) the forward kernel takes about as
long as Triton's own launch path, ``fn[grid](*args, **constexprs)``, which binds the arguments,
specialises every integer and pointer and looks up the compiled kernel on every call. This module holds
everything that shortens that path, behind ONE switch:

- on (the default; ``MINIMAMBA_FAST_LAUNCH=1``): after a first normal launch, :func:`launch` keeps the
  compiled kernel under a key made of what Triton specialises on (dtypes, 16-byte alignment of pointers,
  integers equal to 1 or divisible by 16, the constexprs, num_warps) and calls its launcher directly; and
  :func:`scratch` hands the pieces of one fp32 allocation to the kernels as :class:`Slot` s (an integer
  address: a tensor view costs 3-10 µs of host time). Under the interpreter, or if the direct call
  fails once, launches take the normal path (Slots become tensor views there).
- off (``MINIMAMBA_FAST_LAUNCH=0``, or :func:`set_fast_launch` ``(False)``): every launch is a plain
  ``kernel[grid](*args, **constexprs, num_warps=...)``, and every piece of scratch memory a tensor view.

The kernels, their launch sizes and results are the same either way (the tests run both).
"""

from __future__ import annotations

import math
import os
import warnings

import torch
import triton

__all__ = [
    "Slot",
    "as_tensor",
    "fast_launch_enabled",
    "launch",
    "phase",
    "piece",
    "scratch",
    "set_fast_launch",
    "set_phase_hook",
    "specialisation_key",
]

#: [switch on, direct launcher usable with this Triton]
_STATE = [
    os.environ.get("MINIMAMBA_FAST_LAUNCH", "1").strip() not in ("0", "false", "False", "off", ""),
    True,
]
_CACHE: dict = {}
#: [a callable (event, kernel) or None]: see set_phase_hook
_HOOK: list = [None]


def fast_launch_enabled() -> bool:
    """Whether the direct launcher and :class:`Slot` s are used (``MINIMAMBA_FAST_LAUNCH``, default 1)."""
    return _STATE[0]


def set_fast_launch(on: bool) -> bool:
    """Switch the host-time layer on or off for this process; returns the previous setting."""
    if not isinstance(on, bool):
        raise TypeError(f"on must be a bool, got {type(on).__name__}")
    before, _STATE[0] = _STATE[0], on
    return before


def set_phase_hook(hook):
    """Call ``hook(event, kernel, consts, key)`` around every launch (events ``"launch_pre"`` and
    ``"launch_post"``, with the ``@triton.jit`` function launched, its constexprs and the caller's cache key)
    and at the entry and exit of the eager autograd Function's forward and backward (``"fwd_in"``,
    ``"fwd_out"``, ``"bwd_in"``, ``"bwd_out"``; the rest None). None removes it. Returns the hook it
    replaces. ``profile.py --stamps`` uses it to time the host's phases, the tests to see what launches."""
    if hook is not None and not callable(hook):
        raise TypeError(f"hook must be callable or None, got {type(hook).__name__}")
    before, _HOOK[0] = _HOOK[0], hook
    return before


def phase(event: str, kernel=None, consts=None, key=None) -> None:
    """Report ``event`` to the phase hook, if one is set (see :func:`set_phase_hook`)."""
    hook = _HOOK[0]
    if hook is not None:
        hook(event, kernel, consts, key)


class Slot(int):
    """A contiguous fp32 piece of a larger allocation (``base``, from element ``offset``, of ``shape``),
    handed to a kernel as its device address: Triton's launcher takes an int for a pointer. A tensor view
    is made only where one is needed: for the launch that compiles, and under the interpreter
    (:meth:`view`)."""

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
        return _view(self.base, self.offset, self.shape)


def _view(base: torch.Tensor, offset: int, shape: tuple) -> torch.Tensor:
    strides, n = [], 1
    for size in reversed(shape):
        strides.append(n)
        n *= size
    return base.as_strided(shape, strides[::-1], offset)


def piece(base: torch.Tensor, offset: int, shape: tuple):
    """The contiguous piece of the fp32 allocation ``base`` from element ``offset``, of ``shape``: a
    :class:`Slot` with the switch on, else a tensor view."""
    if _STATE[0]:
        return Slot(base, base.data_ptr(), offset, shape)
    return _view(base, offset, shape)


def as_tensor(x):
    """A :class:`Slot` as a tensor view; a tensor (or None) as it is."""
    return x.view() if isinstance(x, Slot) else x


def scratch(device, parts: list, packed: bool) -> tuple:
    """Buffers for a launch: ``parts`` is a list of (shape, returned) in fp32, None for a part not needed.
    Every part in one allocation (``packed``, or not returned to the caller), as :func:`piece` s; a part
    returned unpacked is a tensor of its own (the outputs of a custom op must not share memory). Each
    part starts on a 128-byte boundary. Returns (the allocation or None, the parts)."""
    offsets, total = [], 0
    for part in parts:
        offsets.append(total)
        if part is not None and (packed or not part[1]):
            total += -(-math.prod(part[0]) // 32) * 32
    work = torch.empty((total,), device=device, dtype=torch.float32) if total or packed else None
    slots = _STATE[0]
    address = 0 if work is None else work.data_ptr()
    out = []
    for part, offset in zip(parts, offsets):
        if part is None:
            out.append(None)
        elif packed or not part[1]:
            out.append(Slot(work, address, offset, part[0]) if slots else _view(work, offset, part[0]))
        else:
            out.append(torch.empty(part[0], device=device, dtype=torch.float32))
    return work, out


def _tensors(args: list) -> list:
    return [a.view() if isinstance(a, Slot) else a for a in args]


def specialisation_key(fn, args: list, consts: dict, num_warps: int) -> tuple:
    """What Triton compiles apart for ``fn[grid](*args, **consts, num_warps=num_warps)``: each tensor's
    dtype and 16-byte alignment, each integer's being 1, divisible by 16, or beyond 32 bits; the
    constexprs and num_warps."""
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
    cheaper than working it out from every argument (:func:`specialisation_key`)."""
    if _HOOK[0] is not None:
        phase("launch_pre", fn, consts, key)
        kernel = _launch(fn, grid, args, consts, num_warps, key, options)
        phase("launch_post", fn, consts, key)
        return kernel
    return _launch(fn, grid, args, consts, num_warps, key, options)


def _launch(fn, grid, args, consts, num_warps, key, options):
    if not (_STATE[0] and _STATE[1] and args[0].is_cuda):  # the plain launch
        return fn[grid](*_tensors(args), **consts, num_warps=num_warps, **options)
    if key is None:
        key = (*specialisation_key(fn, args, consts, num_warps), tuple(options.items()))
    else:
        key = (fn, key)
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
        _STATE[1] = False
        warnings.warn(f"direct Triton launch unavailable ({e!r}); using the normal launch", stacklevel=3)
        return fn[grid](*_tensors(args), **consts, num_warps=num_warps, **options)
    return kernel
