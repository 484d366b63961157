"""The Mamba block (Mamba §3.4, Fig. 3): the mixer that replaces attention, with mamba_ssm's names.

    hidden (batch, L, d_model)
      └ in_proj ─┬─ x (batch, d_inner, L) → causal depthwise conv1d → SiLU → x_proj → Δ, B, C
                 │                                                       dt_proj, softplus ↓
                 │                          selective scan  y = SSM(A, Δ, B, C, D)(x) ←───┘
                 └─ z (batch, d_inner, L) ────────────────── gate  y · SiLU(z)
                                                                  └ out_proj → (batch, L, d_model)

Two ways to run it: ``forward`` over a whole sequence (the parallel / training mode; with a cache it also
continues from the cache and leaves it ready for ``step``), and ``step`` for one token with a cache
(the recurrent / generation mode, O(1) work and memory per token). Each has a fused version with the same
arithmetic: ``_step_fused``, chosen on a GPU as the scan chooses its backend, and ``_forward_fused`` (Triton
conv, fewer stored activations; ``minimamba/fused.py``), chosen on a GPU too (``fused_forward``). ``forward`` and
``step`` as written below are what the notebooks read.

``selective=False`` in the config gives the LTI ablation of Table 1: Δ (through softplus of ``dt_bias``),
B and C are learned parameters independent of the input (S4D-like), and x_proj / dt_proj are gone;
everything else (conv, gate, projections) is identical. With Δ, B, C constant in time the SSM is a
convolution (Mamba §2, Eq. 3a/3b: LTI SSMs train in this convolutional mode and generate in the recurrent
one), and ``forward`` without a cache computes it that way (:meth:`MambaMixer.lti_ssm`): every channel's
kernel K (d_inner, L) from the (d_inner, N) parameters, then an FFT convolution, O(L log L) work per
channel and O(batch · d_inner · L) memory, where the scan would make (batch, d_inner, N, L) tensors. ``step``
and ``forward`` with a cache carry the state and run the recurrence, as for the selective block.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from minimamba.config import MambaConfig
from minimamba.generate import LayerCache
from minimamba.lti import channel_convolution, ssm_kernels
from minimamba.scan import selective_scan

__all__ = ["MambaMixer", "fused_step_here", "inverse_softplus", "sample_dt"]


def inverse_softplus(y: torch.Tensor) -> torch.Tensor:
    """softplus⁻¹(y) = log(exp(y) − 1) = y + log(1 − exp(−y)), written to stay accurate for small y."""
    return y + torch.log(-torch.expm1(-y))


def sample_dt(n: int, dt_min: float, dt_max: float, floor: float, generator=None) -> torch.Tensor:
    """n values of Δ drawn log-uniform in [dt_min, dt_max], clamped below at ``floor`` (range from §3.6; log-uniform and the floor as in mamba_ssm), fp32."""
    log_dt = torch.rand(n, generator=generator) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
    return torch.exp(log_dt).clamp(min=floor)  # (n,)


class MambaMixer(nn.Module):
    """One Mamba mixer: ``forward(hidden (batch, L, d_model), cache=None) -> (batch, L, d_model)``.

    Parameters (mamba_ssm's names): in_proj, conv1d, x_proj, dt_proj, A_log, D, out_proj; in the LTI
    mode (``config.selective=False``) dt_bias, B, C replace x_proj and dt_proj, and ``forward`` without a
    cache computes the SSM as a convolution (:meth:`lti_ssm`).
    """

    def __init__(self, config: MambaConfig):
        super().__init__()
        if not isinstance(config, MambaConfig):
            raise TypeError(f"config must be a MambaConfig, got {type(config).__name__}")
        self.config = config
        c = config
        d_inner, N, R = c.d_inner, c.d_state, c.dt_rank
        self.d_inner, self.d_state, self.d_conv, self.dt_rank = d_inner, N, c.d_conv, R
        self.selective = c.selective

        self.in_proj = nn.Linear(c.d_model, 2 * d_inner, bias=c.bias)  # d_model -> (x, z), 2·d_inner
        # depthwise (groups = channels) and causal: pad d_conv−1 on both sides, keep the first L outputs
        self.conv1d = nn.Conv1d(
            d_inner, d_inner, kernel_size=c.d_conv, groups=d_inner, padding=c.d_conv - 1, bias=c.conv_bias
        )  # weight (d_inner, 1, d_conv)
        dt = sample_dt(d_inner, c.dt_min, c.dt_max, c.dt_init_floor)  # (d_inner,) Δ at init
        if c.selective:
            self.x_proj = nn.Linear(d_inner, R + 2 * N, bias=False)  # d_inner -> (Δ low-rank, B, C)
            self.dt_proj = nn.Linear(R, d_inner, bias=True)  # R -> d_inner, then softplus gives Δ
            std = R**-0.5 * c.dt_scale
            with torch.no_grad():
                if c.dt_init == "constant":
                    self.dt_proj.weight.fill_(std)
                else:
                    self.dt_proj.weight.uniform_(-std, std)
                # softplus(bias) = dt: sample dt, not log(dt), then invert softplus (the dt² bug otherwise)
                self.dt_proj.bias.copy_(inverse_softplus(dt))
            self.dt_proj.bias._no_reinit = True  # the LM's init must not zero this bias
        else:
            self.dt_bias = nn.Parameter(inverse_softplus(dt))  # (d_inner,) Δ = softplus(dt_bias)
            self.B = nn.Parameter(torch.ones(d_inner, N))  # (d_inner, N) as S4D's B = 1
            self.C = nn.Parameter(torch.randn(d_inner, N))  # (d_inner, N) as S4D's C ~ N(0, 1)
        # S4D-real (§3.6): A_n = −(n+1); store log(−A) so that A = −exp(A_log) stays negative in training
        A = torch.arange(1, N + 1, dtype=torch.float32).repeat(d_inner, 1)  # (d_inner, N) = 1..N
        self.A_log = nn.Parameter(torch.log(A))  # (d_inner, N)
        self.D = nn.Parameter(torch.ones(d_inner))  # (d_inner,) skip connection y += D·x
        self.out_proj = nn.Linear(d_inner, c.d_model, bias=c.bias)  # d_inner -> d_model

    # ----------------------------------------------------------------------------------------------------
    def ssm_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Δ before softplus, B and C for the scan, from the conv output x: (batch, d_inner, L).

        Returns delta: (batch, d_inner, L), B, C: (batch, N, L) when selective, else (batch, d_inner, N, L)
        expanded views of the learned (d_inner, N) parameters (one group per channel). Δ = softplus(delta).
        """
        batch, _, L = x.shape
        if not self.selective:
            delta = self.dt_bias[None, :, None].expand(batch, self.d_inner, L)  # (batch, d_inner, L)
            B = self.B[None, :, :, None].expand(batch, self.d_inner, self.d_state, L)  # (b, d_inner, N, L)
            C = self.C[None, :, :, None].expand(batch, self.d_inner, self.d_state, L)  # (b, d_inner, N, L)
            return delta, B, C
        x_dbl = self.x_proj(x.transpose(1, 2))  # (batch, L, R + 2N)
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = self.dt_proj(dt).transpose(1, 2)  # (batch, d_inner, L), bias included
        return delta, B.transpose(1, 2), C.transpose(1, 2)  # B, C: (batch, N, L)

    def forward(self, hidden: torch.Tensor, cache: LayerCache | None = None) -> torch.Tensor:
        """hidden: (batch, L, d_model) -> (batch, L, d_model).

        With a ``cache`` the sequence continues from it (its conv window and SSM state) and the cache is
        updated in place to the end of this sequence, ready for :meth:`step`.
        """
        if not isinstance(hidden, torch.Tensor) or hidden.dim() != 3:
            raise ValueError(f"hidden must be a (batch, L, d_model) tensor, got {_describe(hidden)}")
        batch, L, _ = hidden.shape
        if cache is not None:
            _check_cache(cache, batch, self)
        elif self.uses_fused_forward(hidden):
            return self._forward_fused(hidden)
        xz = self.in_proj(hidden).transpose(1, 2)  # (batch, 2·d_inner, L)
        x, z = xz.chunk(2, dim=1)  # (batch, d_inner, L) each
        if cache is None:
            x = self.conv1d(x)[..., :L]  # (batch, d_inner, L + d_conv − 1) -> keep the first L: causal
            h0 = None
        else:
            window = torch.cat([cache.conv_state[..., 1:].to(x.dtype), x], dim=-1)  # (b, d_inner, d_conv−1+L)
            cache.conv_state.copy_(window[..., -self.d_conv :])  # the last d_conv inputs, for step()
            x = F.conv1d(window, self.conv1d.weight, self.conv1d.bias, groups=self.d_inner)  # (b, d_inner, L)
            h0 = cache.ssm_state
        x = F.silu(x)  # (batch, d_inner, L)
        if cache is None and not self.selective:  # LTI from a zero state: the SSM is a convolution
            return self.out_proj(self.lti_ssm(x, z).transpose(1, 2))  # (batch, L, d_model)
        delta, B, C = self.ssm_inputs(x)
        A = -torch.exp(self.A_log.to(_state_dtype(x)))  # (d_inner, N), negative
        out = selective_scan(
            x, delta, A, B, C, self.D, z=z, delta_softplus=True, return_last_state=cache is not None, h0=h0,
            backend=self.scan_backend, recompute_states=self.recompute_scan_states,
        )  # fmt: skip
        if cache is not None:
            y, h_last = out
            cache.ssm_state.copy_(h_last)  # (batch, d_inner, N)
        else:
            y = out  # (batch, d_inner, L), already gated by SiLU(z)
        return self.out_proj(y.transpose(1, 2))  # (batch, L, d_model)

    def lti_ssm(self, u: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The LTI block's SSM over a whole sequence from a zero state, as a convolution (Mamba Eq. 3a/3b):

            y_t = sum_{k=0}^{t} K[c, k] u[c, t-k] + D_c u_t,
            K[c, k] = sum_n C[c, n] exp(k Δ_c A[c, n]) Δ_c B[c, n],

        then gated by SiLU(z): what the selective scan gives for the same Δ = softplus(dt_bias), B, C (its
        discretization, ZOH for A and Euler for B), in fp32 (fp64 for fp64 input) like the scan's state.

        u, z: (batch, d_inner, L) -> y: (batch, d_inner, L) in u's dtype.
        """
        ct = _state_dtype(u)
        delta = F.softplus(self.dt_bias.to(ct))  # (d_inner,) Δ
        A = -torch.exp(self.A_log.to(ct))  # (d_inner, N), negative
        K = ssm_kernels(delta, A, self.B.to(ct), self.C.to(ct), u.shape[-1])  # (d_inner, L)
        uc = u.to(ct)
        y = channel_convolution(K, uc) + self.D.to(ct)[:, None] * uc  # (batch, d_inner, L)
        return (y * F.silu(z.to(ct))).to(u.dtype)  # gate, as the scan does

    #: Which selective scan ``forward`` calls (``minimamba.scan.selective_scan``'s ``backend``): "auto" takes
    #: the Triton kernel on a GPU and the chunked PyTorch scan on a CPU; "triton" on a CPU runs the kernel
    #: in Triton's interpreter (tiny shapes: tests, notebook 07's memory count). The LTI block without a
    #: cache calls no scan (:meth:`lti_ssm`).
    scan_backend: str = "auto"

    #: Whether the Triton scan keeps the states its backward restarts from (False, the default: one state
    #: every 8 steps, batch · d_inner · L · N / 8 fp32 numbers per layer, alive from the layer's forward to
    #: its backward) or recomputes them in the backward (True: one more scan forward per layer and step, and
    #: those bytes saved). At the 130M shape on an H100 (``results/profile_training.json``): 22.1 GiB and
    #: 125 ms a step with the states kept, 17.6 GiB and 136 ms recomputed; mamba_ssm's 18.0 GiB and 118 ms.
    recompute_scan_states: bool = False

    #: How ``forward`` runs over a whole sequence without a cache (training): True takes the fused path
    #: (:meth:`_forward_fused`; on CPU through Triton's interpreter: tests), None (the default) picks it on
    #: a CUDA GPU, False keeps the PyTorch ops above. ``Block`` follows it for the residual add + RMSNorm.
    #: On an H100, a training step of the 130M shape takes 125 ms fused and 184 ms readable, 22 GiB against
    #: 29 (``results/profile_training.json``).
    fused_forward: bool | None = None

    def uses_fused_forward(self, hidden: torch.Tensor) -> bool:
        """Whether ``forward(hidden)`` without a cache takes the fused path (selective blocks only)."""
        return self.selective and fused_step_here(self.fused_forward, hidden)

    def _forward_fused(self, hidden: torch.Tensor) -> torch.Tensor:
        """``forward`` without a cache, fused (``minimamba.fused``): the conv, SiLU and x_proj in one autograd
        node that recomputes the conv output in its backward, every projection in the conv's and the scan's
        (batch, ·, L) layout (``weight_matmul``: no transposed copies; out_proj writes the (batch, L, d_model)
        output directly), dt_proj's bias added inside the scan,
        and the scan's saved u and Δ recomputed in the backward instead of stored. The same arithmetic as the
        lines above."""
        from minimamba.fused import (  # noqa: PLC0415
            conv_x_proj,
            recompute_conv,
            recomputed,
            weight_matmul,
            weight_matmul_split,
        )

        h_t, w_in, b_in = hidden.transpose(1, 2), self.in_proj.weight, self.in_proj.bias  # h_t: a view
        x, z = weight_matmul_split(w_in, h_t, (self.d_inner, self.d_inner))  # (batch, d_inner, L) each
        if b_in is not None:
            x, z = x + b_in[: self.d_inner, None], z + b_in[self.d_inner :, None]
        w_conv = self.conv1d.weight[:, 0, :]  # (d_inner, d_conv)
        u, x_dbl = conv_x_proj(x, w_conv, self.conv1d.bias, self.x_proj.weight)  # (batch, ·, L)
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=1)  # (batch, ·, L)
        delta = weight_matmul(self.dt_proj.weight, dt)  # (batch, d_inner, L), without the bias
        A = -torch.exp(self.A_log.to(_state_dtype(u)))  # (d_inner, N)
        if torch.compiler.is_compiling():  # the compiler decides what to save
            y = selective_scan(
                u, delta, A, B, C, self.D, z=z, delta_bias=self.dt_proj.bias, delta_softplus=True,
                backend=self.scan_backend, recompute_states=self.recompute_scan_states,
            )  # fmt: skip
        else:
            w_dt, dt_, dtype = self.dt_proj.weight.detach(), dt.detach(), delta.dtype  # not delta itself
            with (
                recomputed(u, recompute_conv(x, w_conv, self.conv1d.bias)),
                recomputed(delta, lambda: weight_matmul(w_dt.to(dtype), dt_.to(dtype))),
            ):
                y = selective_scan(
                    u, delta, A, B, C, self.D, z=z, delta_bias=self.dt_proj.bias, delta_softplus=True,
                    backend=self.scan_backend, recompute_states=self.recompute_scan_states,
                )  # (batch, d_inner, L), gated  # fmt: skip
        out = weight_matmul(
            self.out_proj.weight, y, out_layout="BLK"
        )  # (batch, L, d_model): reads y in place
        if self.out_proj.bias is not None:
            out = out + self.out_proj.bias
        return out

    #: How ``step`` runs: None picks the fused Triton kernels on a CUDA GPU (``fused_step_here``), True
    #: forces them (on CPU through Triton's interpreter: tests), False keeps the PyTorch ops below.
    fused_step: bool | None = None

    def step(self, hidden: torch.Tensor, cache: LayerCache) -> torch.Tensor:
        """One token: hidden (batch, d_model) -> (batch, d_model); updates ``cache`` in place.

        The recurrence h_t = exp(Δ_t A) h_{t−1} + Δ_t B_t x_t, y_t = C_t·h_t + D x_t, in fp32. Written
        below as PyTorch ops (a dozen small kernels); on a GPU the conv and the state update run as two
        fused Triton kernels instead (:meth:`_step_fused`), the same arithmetic.
        """
        if not isinstance(hidden, torch.Tensor) or hidden.dim() != 2:
            raise ValueError(f"hidden must be a (batch, d_model) tensor, got {_describe(hidden)}")
        _check_cache(cache, hidden.shape[0], self)
        if self.selective and fused_step_here(self.fused_step, hidden):
            return self._step_fused(hidden, cache)
        xz = self.in_proj(hidden)  # (batch, 2·d_inner)
        x, z = xz.chunk(2, dim=-1)  # (batch, d_inner) each
        # conv window: drop the oldest input, append the new one
        cache.conv_state.copy_(torch.roll(cache.conv_state, shifts=-1, dims=-1))
        cache.conv_state[:, :, -1] = x
        w = self.conv1d.weight[:, 0, :]  # (d_inner, d_conv)
        x = (cache.conv_state.to(w.dtype) * w).sum(-1)  # (batch, d_inner): the conv at the newest position
        if self.conv1d.bias is not None:
            x = x + self.conv1d.bias
        x = F.silu(x)  # (batch, d_inner)
        delta, B, C = self.ssm_inputs(x[:, :, None])  # length-1 sequence
        ct = _state_dtype(x)  # fp32, or fp64 for an fp64 model
        delta = F.softplus(delta[..., 0].to(ct))  # (batch, d_inner) Δ
        B, C = B[..., 0].to(ct), C[..., 0].to(ct)  # (batch, N) or (batch, d_inner, N)
        if B.dim() == 2:
            B, C = B[:, None, :], C[:, None, :]  # (batch, 1, N): shared by all channels
        A = -torch.exp(self.A_log.to(ct))  # (d_inner, N)
        xf = x.to(ct)
        A_bar = torch.exp(delta[..., None] * A)  # (batch, d_inner, N)  ZOH
        B_bar_x = delta[..., None] * B * xf[..., None]  # (batch, d_inner, N)  Euler
        h = A_bar * cache.ssm_state + B_bar_x  # (batch, d_inner, N)
        cache.ssm_state.copy_(h)
        y = (h * C).sum(-1) + self.D.to(ct) * xf  # (batch, d_inner)
        y = y * F.silu(z.to(ct))  # gate
        return self.out_proj(y.to(hidden.dtype))  # (batch, d_model)

    def _step_fused(self, hidden: torch.Tensor, cache: LayerCache) -> torch.Tensor:
        """``step`` with two Triton kernels: the conv window update (``causal_conv1d_update``) and the state
        update (``selective_state_update``: softplus(Δ + bias), exp(ΔA), h, C·h, D, the gate), as mamba_ssm's
        generation does. Seven launches per layer with the projections, instead of about twenty."""
        from minimamba.kernels.causal_conv1d import causal_conv1d_update  # noqa: PLC0415
        from minimamba.kernels.state_update import selective_state_update  # noqa: PLC0415

        x, z = self.in_proj(hidden).chunk(2, dim=-1)  # (batch, d_inner) each, views
        conv_w = self.conv1d.weight[:, 0, :]  # (d_inner, d_conv)
        x = causal_conv1d_update(cache.conv_state, x, conv_w, self.conv1d.bias, silu=True)  # (batch, d_inner)
        dt, B, C = torch.split(self.x_proj(x), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.linear(dt, self.dt_proj.weight)  # (batch, d_inner); the bias is added inside the kernel
        A = -torch.exp(self.A_log.float())  # (d_inner, N)
        y = selective_state_update(
            cache.ssm_state, x, dt, A, B, C, D=self.D, z=z, dt_bias=self.dt_proj.bias, dt_softplus=True
        )  # (batch, d_inner), gated
        return self.out_proj(y)  # (batch, d_model)

    def init_cache(self, batch_size: int, dtype: torch.dtype | None = None, device=None) -> LayerCache:
        """A zero cache: conv_state (batch, d_inner, d_conv) in ``dtype``, ssm_state (batch, d_inner, N) fp32."""
        w = self.in_proj.weight
        dtype = dtype or w.dtype
        device = device or w.device
        conv_state = torch.zeros(batch_size, self.d_inner, self.d_conv, dtype=dtype, device=device)
        return LayerCache(
            conv_state=conv_state,
            ssm_state=torch.zeros(
                batch_size, self.d_inner, self.d_state, dtype=_state_dtype(conv_state), device=device
            ),
        )


def fused_step_here(choice: bool | None, t: torch.Tensor) -> bool:
    """Whether the fused Triton kernels run (a decoding step, or the training forward): ``choice`` if given,
    else on a CUDA tensor (not fp64, which the kernels do not cover) when Triton can launch there (under
    ``torch.compile``, which needs Triton on a GPU itself, without asking)."""
    if choice is not None:
        return choice
    if torch.compiler.is_compiling():
        return t.is_cuda and t.dtype != torch.float64
    return t.is_cuda and t.dtype != torch.float64 and _triton_usable()


@functools.cache
def _triton_usable() -> bool:
    """Decided once per process: a decoding loop asks once per token and layer."""
    from minimamba import env  # noqa: PLC0415

    return env.triton_status().usable


def _state_dtype(t: torch.Tensor) -> torch.dtype:
    """The scan state's dtype: fp32 whatever the activations, fp64 when they are fp64."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _describe(t) -> str:
    if isinstance(t, torch.Tensor):
        return f"shape {tuple(t.shape)}"
    return type(t).__name__


def _check_cache(cache, batch: int, mixer: MambaMixer) -> None:
    if not isinstance(cache, LayerCache):
        raise TypeError(f"cache must be a LayerCache (from init_cache), got {type(cache).__name__}")
    want_conv = (batch, mixer.d_inner, mixer.d_conv)
    want_ssm = (batch, mixer.d_inner, mixer.d_state)
    if tuple(cache.conv_state.shape) != want_conv:
        raise ValueError(f"cache.conv_state must have shape {want_conv}, got {tuple(cache.conv_state.shape)}")
    if tuple(cache.ssm_state.shape) != want_ssm:
        raise ValueError(f"cache.ssm_state must have shape {want_ssm}, got {tuple(cache.ssm_state.shape)}")
