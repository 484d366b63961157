"""The Mamba language model (Mamba §3.4, App. E.2): embedding → n_layer residual blocks → norm → LM head.

Parameter names are mamba_ssm's (``MambaLMHeadModel``) so the original ``state-spaces/mamba-*`` checkpoints'
state_dict loads directly:

    backbone.embedding.weight                  (padded_vocab, d_model)
    backbone.layers.{i}.norm.weight            (d_model,)        RMSNorm before the mixer
    backbone.layers.{i}.mixer.*                in_proj, conv1d, x_proj, dt_proj, A_log, D, out_proj
    backbone.norm_f.weight                     (d_model,)        the final RMSNorm
    lm_head.weight                             (padded_vocab, d_model), tied to the embedding

Each block is mamba_ssm's ``Block``, "add then norm": residual ← hidden + residual; hidden ←
mixer(RMSNorm(residual)). The residual stream is kept in fp32 when ``residual_in_fp32``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from minimamba.block import MambaMixer, fused_step_here
from minimamba.config import MambaConfig
from minimamba.generate import InferenceCache

__all__ = ["Block", "MambaLM", "MixerModel", "RMSNorm", "param_count"]


class RMSNorm(nn.Module):
    """x / sqrt(mean(x²) + eps) · weight, computed in fp32, returned in x's dtype (Zhang & Sennrich 2019)."""

    def __init__(self, d_model: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))  # (d_model,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float() if x.dtype != torch.float64 else x
        rstd = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)  # (..., 1)
        return (xf * rstd * self.weight.to(xf.dtype)).to(x.dtype)


def _fused_add_norm(hidden, residual, norm: RMSNorm, residual_in_fp32: bool):
    """(norm(hidden + residual), hidden + residual) in one Triton kernel (``minimamba.kernels.rmsnorm``)."""
    from minimamba.kernels.rmsnorm import add_rms_norm  # noqa: PLC0415

    return add_rms_norm(hidden, residual, norm.weight, norm.eps, residual_in_fp32)


def _fused_add_norm_fn(hidden, residual, norm: RMSNorm, residual_in_fp32: bool, out_dtype=None):
    """The same with autograd (training): ``minimamba.kernels.rmsnorm.add_rms_norm_fn``."""
    from minimamba.kernels.rmsnorm import add_rms_norm_fn  # noqa: PLC0415

    return add_rms_norm_fn(hidden, residual, norm.weight, norm.eps, residual_in_fp32, out_dtype)


def _autocast_dtype(t: torch.Tensor) -> torch.dtype | None:
    """The dtype autocast gives a matmul on t's device, None outside autocast (and while compiling: the
    compiler fuses the cast into the norm itself)."""
    if torch.compiler.is_compiling() or not torch.is_autocast_enabled(t.device.type):
        return None
    return torch.get_autocast_dtype(t.device.type)


class Block(nn.Module):
    """mamba_ssm's ``Block``: (hidden, residual) -> (mixer(norm(hidden + residual)), hidden + residual)."""

    def __init__(self, config: MambaConfig):
        super().__init__()
        self.residual_in_fp32 = config.residual_in_fp32
        self.mixer = MambaMixer(config)
        self.norm = RMSNorm(config.d_model, eps=config.norm_eps)

    def _add_norm(self, hidden, residual):
        residual = hidden if residual is None else hidden + residual  # the residual stream
        hidden = self.norm(residual.to(self.norm.weight.dtype))
        if self.residual_in_fp32 and residual.dtype != torch.float64:
            residual = residual.float()
        return hidden, residual

    def forward(self, hidden, residual=None, cache=None):
        """hidden, residual: (batch, L, d_model) -> the same two (the add and the norm fused into one Triton
        kernel, with its backward, where the mixer's forward is fused)."""
        if cache is None and self.mixer.uses_fused_forward(hidden):
            # the norm's output goes to in_proj alone: written in the dtype autocast would cast it to
            out_dtype = _autocast_dtype(hidden)
            hidden, residual = _fused_add_norm_fn(
                hidden, residual, self.norm, self.residual_in_fp32, out_dtype
            )
        else:
            hidden, residual = self._add_norm(hidden, residual)
        return self.mixer(hidden, cache=cache), residual

    def step(self, hidden, residual, cache):
        """hidden, residual: (batch, d_model) -> the same two, one token (the add and the norm fused into one
        Triton kernel where the mixer's step is fused)."""
        if fused_step_here(self.mixer.fused_step, hidden):
            hidden, residual = _fused_add_norm(hidden, residual, self.norm, self.residual_in_fp32)
        else:
            hidden, residual = self._add_norm(hidden, residual)
        return self.mixer.step(hidden, cache), residual


class MixerModel(nn.Module):
    """The backbone: embedding, layers, final norm. input_ids (batch, L) -> hidden (batch, L, d_model)."""

    def __init__(self, config: MambaConfig):
        super().__init__()
        self.embedding = nn.Embedding(config.padded_vocab_size, config.d_model)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.norm_f = RMSNorm(config.d_model, eps=config.norm_eps)

    def forward(self, input_ids: torch.Tensor, cache: InferenceCache | None = None) -> torch.Tensor:
        hidden, residual = self.embedding(input_ids), None  # (batch, L, d_model)
        for i, layer in enumerate(self.layers):
            hidden, residual = layer(hidden, residual, cache=None if cache is None else cache.layers[i])
        if cache is None and self.layers[-1].mixer.uses_fused_forward(hidden):
            return _fused_add_norm_fn(hidden, residual, self.norm_f, False)[0]
        residual = hidden + residual
        return self.norm_f(residual.to(self.norm_f.weight.dtype))  # (batch, L, d_model)

    def step(self, input_ids: torch.Tensor, cache: InferenceCache) -> torch.Tensor:
        hidden, residual = self.embedding(input_ids), None  # (batch, d_model)
        for i, layer in enumerate(self.layers):
            hidden, residual = layer.step(hidden, residual, cache.layers[i])
        if fused_step_here(self.layers[-1].mixer.fused_step, hidden):
            return _fused_add_norm(hidden, residual, self.norm_f, False)[0]
        residual = hidden + residual
        return self.norm_f(residual.to(self.norm_f.weight.dtype))  # (batch, d_model)


class MambaLM(nn.Module):
    """A Mamba language model: ``forward(input_ids (batch, L)) -> logits (batch, L, padded_vocab_size)``.

    Logits have ``config.padded_vocab_size`` columns (as mamba_ssm's); the last ``padded − vocab_size``
    belong to no token.
    """

    def __init__(self, config: MambaConfig):
        super().__init__()
        if not isinstance(config, MambaConfig):
            raise TypeError(f"config must be a MambaConfig, got {type(config).__name__}")
        self.config = config
        self.backbone = MixerModel(config)
        self.lm_head = nn.Linear(config.d_model, config.padded_vocab_size, bias=False)
        self._init_weights()
        if config.tie_embeddings:
            self.lm_head.weight = self.backbone.embedding.weight

    @torch.no_grad()
    def _init_weights(self) -> None:
        """mamba_ssm's ``_init_weights``: embedding N(0, 0.02²); Linear biases zero (except dt_proj's);
        out_proj scaled by 1/sqrt(n_layer) (GPT-2's prenorm-residual rescaling), so that the residual
        stream's variance does not grow with depth."""
        nn.init.normal_(self.backbone.embedding.weight, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear) and module.bias is not None:
                if not getattr(module.bias, "_no_reinit", False):
                    nn.init.zeros_(module.bias)
        for layer in self.backbone.layers:
            w = layer.mixer.out_proj.weight
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))
            w /= math.sqrt(self.config.n_layer)

    def _check_ids(self, input_ids, ndim: int, shape: str) -> None:
        if not isinstance(input_ids, torch.Tensor) or input_ids.dtype not in (torch.int64, torch.int32):
            got = getattr(input_ids, "dtype", type(input_ids).__name__)
            raise TypeError(f"input_ids must be an int64 tensor of shape {shape}, got {got}")
        if input_ids.dim() != ndim:
            raise ValueError(f"input_ids must have shape {shape}, got {tuple(input_ids.shape)}")

    def forward(
        self, input_ids: torch.Tensor, cache: InferenceCache | None = None, num_last_tokens: int = 0
    ) -> torch.Tensor:
        """input_ids: (batch, L) -> logits (batch, L, padded_vocab_size), or of the last ``num_last_tokens``
        positions only (mamba_ssm's argument: a prefill needs the last position's logits, and the full
        (batch, L, vocab) tensor can be larger than the model).

        With ``cache`` (from :meth:`init_cache`), continues from it and leaves it at the end of the sequence.
        """
        self._check_ids(input_ids, 2, "(batch, L)")
        if isinstance(num_last_tokens, bool) or not isinstance(num_last_tokens, int) or num_last_tokens < 0:
            raise ValueError(
                f"num_last_tokens must be an int >= 0 (0 = every position), got {num_last_tokens!r}"
            )
        hidden = self.backbone(input_ids, cache=cache)  # (batch, L, d_model)
        if cache is not None:
            cache.seqlen += input_ids.shape[1]
        if num_last_tokens:
            hidden = hidden[:, -num_last_tokens:]
        return self.lm_head(hidden.to(self.lm_head.weight.dtype))  # (batch, L, padded_vocab)

    def step(self, input_ids: torch.Tensor, cache: InferenceCache) -> torch.Tensor:
        """One token per sequence: input_ids (batch,) -> logits (batch, padded_vocab_size); updates cache."""
        self._check_ids(input_ids, 1, "(batch,)")
        if not isinstance(cache, InferenceCache):
            raise TypeError(f"cache must be an InferenceCache (from init_cache), got {type(cache).__name__}")
        hidden = self.backbone.step(input_ids, cache)  # (batch, d_model)
        cache.seqlen += 1
        return self.lm_head(hidden.to(self.lm_head.weight.dtype))  # (batch, padded_vocab)

    def init_cache(self, batch_size: int, dtype: torch.dtype | None = None, device=None) -> InferenceCache:
        """A zero cache for ``batch_size`` sequences (one LayerCache per layer)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        return InferenceCache(
            [layer.mixer.init_cache(batch_size, dtype, device) for layer in self.backbone.layers]
        )

    def num_params(self) -> int:
        """Number of distinct parameters (the tied LM head counted once)."""
        return sum(p.numel() for p in self.parameters())

    @classmethod
    def from_pretrained(cls, name_or_dir: str, dtype: torch.dtype | None = None, device=None) -> MambaLM:
        """Load a ``state-spaces/mamba-*`` checkpoint (original or ``-hf`` layout); see ``minimamba.pretrained``."""
        from minimamba.pretrained import load_pretrained  # noqa: PLC0415  (pretrained imports this module)

        return load_pretrained(name_or_dir, dtype=dtype, device=device)


def param_count(config: MambaConfig) -> int:
    """The parameter count of ``MambaLM(config)`` in closed form (derived in notebook 07).

    Per layer, with D = d_model, E·D = d_inner, N = d_state, R = dt_rank, K = d_conv:
    in_proj 2·E·D·D, conv1d E·D·K (+E·D bias), A_log E·D·N, D E·D, out_proj E·D·D, norm D; selective:
    x_proj E·D·(R + 2N) and dt_proj R·E·D + E·D; LTI: dt_bias E·D and B, C 2·E·D·N.
    Plus the embedding V·D (V padded), norm_f D, and the LM head V·D unless tied.
    """
    if not isinstance(config, MambaConfig):
        raise TypeError(f"config must be a MambaConfig, got {type(config).__name__}")
    d, di, n, r, k = config.d_model, config.d_inner, config.d_state, config.dt_rank, config.d_conv
    layer = 2 * di * d + di * k + di * n + di + di * d + d  # in_proj, conv weight, A_log, D, out_proj, norm
    layer += di if config.conv_bias else 0
    layer += (2 * di + d) if config.bias else 0  # in_proj and out_proj biases
    if config.selective:
        layer += di * (r + 2 * n) + r * di + di  # x_proj, dt_proj weight and bias
    else:
        layer += di + 2 * di * n  # dt_bias, B, C
    v = config.padded_vocab_size
    total = config.n_layer * layer + v * d + d
    return total if config.tie_embeddings else total + v * d
