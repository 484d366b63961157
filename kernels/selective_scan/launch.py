"""Launching a Triton kernel with less host time, for kernels called again and again with the same
specialisation (the selective scan in a training loop).

``fn[grid](*args, **constexprs)`` binds the arguments, specialises every integer and pointer and looks up
the compiled kernel on every call: about 80 µs of host time for the scan kernels on the H200's host
(``profile.py --host``), as long as the forward kernel itself at L = 512. After a first normal launch,
``launch`` keeps the compiled kernel under a key made of what Triton specialises on (dtypes, 16-byte
alignment of pointers, integers equal to 1 or divisible by 16, the constexprs, num_warps) and calls it
directly. Under the interpreter, or if the direct call fails once, every launch takes the normal path.
"""

from __future__ import annotations

import warnings

import torch

_CACHE: dict = {}
_DIRECT = [True]


def _key(fn, args, consts, num_warps):
    spec = tuple(
        (a.dtype, a.data_ptr() % 16 == 0)
        if isinstance(a, torch.Tensor)
        else (type(a), a == 1, a % 16 == 0, a >= 2**31 or a < -(2**31))
        for a in args
    )
    return fn, num_warps, tuple(consts.items()), spec


def launch(fn, grid: tuple, args: list, consts: dict, num_warps: int, key=None):
    """``fn[grid](*args, **consts, num_warps=num_warps)``; ``args`` are the parameters before the
    constexprs, in order. Returns the compiled kernel.

    ``key``, when given, must determine everything Triton specialises on (the caller's shapes, switches,
    launch sizes, and the dtypes and alignment of the tensors it did not allocate itself): cheaper than
    working it out from every argument."""
    if not (_DIRECT[0] and args[0].is_cuda):
        return fn[grid](*args, **consts, num_warps=num_warps)
    key = _key(fn, args, consts, num_warps) if key is None else (fn, key)
    kernel = _CACHE.get(key)
    if kernel is None:
        if len(_CACHE) > 4096:
            _CACHE.clear()
        kernel = fn[grid](*args, **consts, num_warps=num_warps)
        _CACHE[key] = kernel
        return kernel
    try:
        names = fn.arg_names[len(args) :]
        kernel[grid](*args, *(consts[n] for n in names), stream=torch.cuda.current_stream().cuda_stream)
    except Exception as e:  # another Triton version: fall back for good
        _DIRECT[0] = False
        warnings.warn(f"direct Triton launch unavailable ({e!r}); using the normal launch", stacklevel=2)
        return fn[grid](*args, **consts, num_warps=num_warps)
    return kernel
