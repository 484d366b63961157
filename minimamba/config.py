"""The hyperparameters of a Mamba language model (Mamba §3.4, App. E.2), with mamba_ssm's names.

Defaults are those of ``mamba_ssm.modules.mamba_simple.Mamba`` and ``MambaLMHeadModel``, so that a config
built from a ``state-spaces/mamba-*`` checkpoint's ``config.json`` reproduces the checkpoint's shapes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

__all__ = ["MambaConfig", "pad_vocab"]


def pad_vocab(vocab_size: int, multiple: int) -> int:
    """vocab_size rounded up to a multiple of ``multiple``: the embedding's and logits' rows (as mamba_ssm pads)."""
    return -(-vocab_size // multiple) * multiple


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"MambaConfig.{name} must be an int, got {type(value).__name__} ({value!r})")
    if value < minimum:
        raise ValueError(f"MambaConfig.{name} must be >= {minimum}, got {value}")


def _check_positive_float(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"MambaConfig.{name} must be a float, got {type(value).__name__} ({value!r})")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"MambaConfig.{name} must be a finite number > 0, got {value}")


@dataclass
class MambaConfig:
    """Sizes and initialization of :class:`minimamba.model.MambaLM`.

    ``dt_rank="auto"`` is resolved to ``ceil(d_model / 16)`` when the config is built, so ``config.dt_rank``
    is always an int. ``d_inner`` and ``padded_vocab_size`` are derived.
    """

    d_model: int  # width of the residual stream (768 for mamba-130m)
    n_layer: int  # number of residual Mamba blocks (24 for mamba-130m)
    vocab_size: int  # tokens the tokenizer can produce (50277 for GPT-NeoX); padded for the embedding
    d_state: int = 16  # N: state size per channel; a larger N helps once B, C are selective (Table 10)
    d_conv: int = 4  # width of the causal depthwise conv before the SSM (mixes the last 4 tokens)
    expand: int = 2  # E: d_inner = E * d_model, the block's inner width (Fig. 3)
    dt_rank: int | str = "auto"  # R: rank of the Δ projection; "auto" = ceil(d_model/16), saves parameters
    dt_min: float = 0.001  # smallest Δ at init: Δ's range sets the time scales a channel remembers
    dt_max: float = 0.1  # largest Δ at init (§3.6: Δ in [0.001, 0.1]; log-uniform as in mamba_ssm)
    dt_init: str = "random"  # dt_proj.weight init: "random" uniform ±dt_rank^-0.5·dt_scale, or "constant"
    dt_scale: float = 1.0  # multiplies that init range
    dt_init_floor: float = 1e-4  # sampled Δ are clamped below at this, so softplus⁻¹ stays finite
    conv_bias: bool = True  # the conv1d has a bias (as in mamba_ssm)
    bias: bool = False  # in_proj and out_proj have no bias (as in mamba_ssm)
    pad_vocab_size_multiple: int = 8  # embedding rows rounded up to a multiple of this (tensor-core friendly)
    tie_embeddings: bool = True  # the LM head reuses the embedding matrix (saves vocab·d_model parameters)
    residual_in_fp32: bool = True  # keep the residual stream in fp32 even when the blocks run in bf16
    norm_eps: float = 1e-5  # RMSNorm epsilon
    selective: bool = True  # False: the LTI ablation (Δ, B, C learned constants, S4D-like; Table 1)

    def __post_init__(self) -> None:
        _check_int("d_model", self.d_model, 1)
        _check_int("n_layer", self.n_layer, 1)
        _check_int("vocab_size", self.vocab_size, 1)
        _check_int("d_state", self.d_state, 1)
        _check_int("d_conv", self.d_conv, 1)
        _check_int("expand", self.expand, 1)
        _check_int("pad_vocab_size_multiple", self.pad_vocab_size_multiple, 1)
        if self.dt_rank == "auto":
            self.dt_rank = math.ceil(self.d_model / 16)
        elif isinstance(self.dt_rank, str):
            raise ValueError(f"MambaConfig.dt_rank must be 'auto' or a positive int, got {self.dt_rank!r}")
        _check_int("dt_rank", self.dt_rank, 1)
        for name in ("dt_min", "dt_max", "dt_scale", "dt_init_floor", "norm_eps"):
            _check_positive_float(name, getattr(self, name))
        if self.dt_min > self.dt_max:
            raise ValueError(
                f"MambaConfig.dt_min must be <= dt_max, got dt_min={self.dt_min}, dt_max={self.dt_max}"
            )
        if self.dt_init not in ("random", "constant"):
            raise ValueError(f"MambaConfig.dt_init must be 'random' or 'constant', got {self.dt_init!r}")
        for name in ("conv_bias", "bias", "tie_embeddings", "residual_in_fp32", "selective"):
            if not isinstance(getattr(self, name), bool):
                value = getattr(self, name)
                raise TypeError(f"MambaConfig.{name} must be a bool, got {type(value).__name__} ({value!r})")

    @property
    def d_inner(self) -> int:
        """Inner width of the block: expand * d_model (the SSM runs d_inner independent channels)."""
        return self.expand * self.d_model

    @property
    def padded_vocab_size(self) -> int:
        """vocab_size rounded up to a multiple of pad_vocab_size_multiple: the embedding's and logits' size."""
        return pad_vocab(self.vocab_size, self.pad_vocab_size_multiple)

    def to_dict(self) -> dict:
        """The fields as a plain dict (``MambaConfig(**d)`` rebuilds it)."""
        return asdict(self)
