"""Load the pretrained ``state-spaces/mamba-*`` checkpoints (Mamba §4.2, Table 3) into :class:`MambaLM`.

Two layouts exist on the Hugging Face Hub:

- the original one (``state-spaces/mamba-{130m,370m,790m,1.4b,2.8b}``), written by mamba_ssm:
  ``config.json`` with ``d_model, n_layer, vocab_size, ssm_cfg, pad_vocab_size_multiple, ...`` and
  ``pytorch_model.bin`` with keys ``backbone.embedding.weight, backbone.layers.{i}.mixer.*, ...``;
- the transformers one (``state-spaces/mamba-130m-hf`` ...): ``config.json`` with ``hidden_size,
  state_size, num_hidden_layers, time_step_rank, conv_kernel, expand, ...`` and ``model.safetensors``
  with keys ``backbone.embeddings.weight, ...`` (the vocabulary is already padded).

Weights are read with safetensors or ``torch.load(weights_only=True)``: a checkpoint can never run code.
A hub id is downloaded with ``huggingface_hub`` (optional: ``pip install huggingface_hub``); a local
directory needs no network.
"""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path

import torch

from minimamba.config import MambaConfig
from minimamba.model import MambaLM

__all__ = [
    "config_from_dict",
    "hub_available",
    "load_pretrained",
    "load_state_dict",
    "mamba_ssm_twin",
    "resolve",
]

PAPER_CHECKPOINTS = [f"state-spaces/mamba-{s}" for s in ("130m", "370m", "790m", "1.4b", "2.8b")]

_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def hub_available(timeout: float = 2.0) -> bool:
    """True when huggingface_hub is installed, offline mode is off and huggingface.co answers quickly.

    Honours ``HF_HUB_OFFLINE=1`` and ``MINIMAMBA_OFFLINE=1`` (no network attempt at all).
    """
    for var in ("HF_HUB_OFFLINE", "MINIMAMBA_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return False
    try:
        import huggingface_hub  # noqa: F401, PLC0415
    except ImportError:
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def resolve(name_or_dir: str | os.PathLike) -> Path:
    """A local checkpoint directory, or download the hub id ``owner/name`` and return its local folder."""
    if not isinstance(name_or_dir, (str, os.PathLike)):
        raise TypeError(f"name_or_dir must be a hub id or a directory, got {type(name_or_dir).__name__}")
    path = Path(name_or_dir)
    if path.is_dir():
        return path
    name = str(name_or_dir)
    if path.exists() or not _HUB_ID.match(name):
        raise FileNotFoundError(
            f"name_or_dir={name!r} is neither a checkpoint directory nor a hub id like 'state-spaces/mamba-130m'"
        )
    try:
        from huggingface_hub import snapshot_download  # noqa: PLC0415
    except ImportError as e:
        raise ImportError(
            f"downloading {name!r} needs huggingface_hub (`pip install huggingface_hub`); "
            "or pass a local directory holding config.json and the weights"
        ) from e
    return Path(
        snapshot_download(
            name, allow_patterns=["config.json", *_WEIGHT_FILES, "model-*.safetensors", "pytorch_model-*.bin"]
        )
    )


def _get(d: dict, key: str, default):
    return d[key] if key in d and d[key] is not None else default


def config_from_dict(d: dict) -> tuple[MambaConfig, str]:
    """A ``config.json`` (as a dict) -> (MambaConfig, layout) with layout ``"original"`` or ``"hf"``.

    Raises ValueError for a config that is not a Mamba-1 language model this package can run.
    """
    if not isinstance(d, dict):
        raise TypeError(f"config must be a dict (config.json), got {type(d).__name__}")
    if "hidden_size" in d and "num_hidden_layers" in d:
        if d.get("model_type", "mamba") != "mamba":
            raise ValueError(
                f"config.json has model_type={d.get('model_type')!r}; only 'mamba' (Mamba-1) loads"
            )
        if d.get("hidden_act", "silu") != "silu":
            raise ValueError(f"config.json has hidden_act={d['hidden_act']!r}; the Mamba block uses 'silu'")
        cfg = MambaConfig(
            d_model=d["hidden_size"],
            n_layer=d["num_hidden_layers"],
            vocab_size=d["vocab_size"],
            d_state=_get(d, "state_size", 16),
            d_conv=_get(d, "conv_kernel", 4),
            expand=_get(d, "expand", 2),
            dt_rank=_get(d, "time_step_rank", "auto"),
            dt_min=_get(d, "time_step_min", 0.001),
            dt_max=_get(d, "time_step_max", 0.1),
            dt_init=_get(d, "time_step_init_scheme", "random"),
            dt_scale=_get(d, "time_step_scale", 1.0),
            dt_init_floor=_get(d, "time_step_floor", 1e-4),
            conv_bias=_get(d, "use_conv_bias", True),
            bias=_get(d, "use_bias", False),
            pad_vocab_size_multiple=1,  # transformers stores the padded vocabulary size
            tie_embeddings=_get(d, "tie_word_embeddings", True),
            residual_in_fp32=_get(d, "residual_in_fp32", True),
            norm_eps=_get(d, "layer_norm_epsilon", 1e-5),
        )
        return cfg, "hf"
    if "d_model" in d and "n_layer" in d:
        ssm = dict(_get(d, "ssm_cfg", {}))
        layer = ssm.pop("layer", "Mamba1")
        if layer != "Mamba1":
            raise ValueError(f"config.json has ssm_cfg.layer={layer!r}; only Mamba1 checkpoints load")
        ssm.pop("use_fast_path", None)
        known = {"d_state", "d_conv", "expand", "dt_rank", "dt_min", "dt_max", "dt_init", "dt_scale"}
        known |= {"dt_init_floor", "conv_bias", "bias"}
        unknown = sorted(set(ssm) - known)
        if unknown:
            raise ValueError(f"config.json ssm_cfg has keys this package does not implement: {unknown}")
        if not _get(d, "rms_norm", True):
            raise ValueError("config.json has rms_norm=false (LayerNorm); only RMSNorm checkpoints load")
        if _get(d, "d_intermediate", 0):
            raise ValueError(
                f"config.json has d_intermediate={d['d_intermediate']} (an MLP per block); not supported"
            )
        if _get(d, "attn_layer_idx", []):
            raise ValueError(f"config.json has attention layers {d['attn_layer_idx']}; not supported")
        cfg = MambaConfig(
            d_model=d["d_model"],
            n_layer=d["n_layer"],
            vocab_size=d["vocab_size"],
            pad_vocab_size_multiple=_get(d, "pad_vocab_size_multiple", 8),
            tie_embeddings=_get(d, "tie_embeddings", True),
            residual_in_fp32=_get(d, "residual_in_fp32", True),
            norm_eps=_get(d, "norm_epsilon", 1e-5),
            **ssm,
        )
        return cfg, "original"
    raise ValueError(
        "config.json is not a Mamba config: expected d_model/n_layer (mamba_ssm) or "
        f"hidden_size/num_hidden_layers (transformers), got keys {sorted(d)}"
    )


def _load_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file  # noqa: PLC0415

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)  # tensors only, never arbitrary code


def load_state_dict(directory: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All tensors of the checkpoint in ``directory`` (single file or shards listed in an index)."""
    directory = Path(directory)
    for name in _WEIGHT_FILES:
        path = directory / name
        if not path.is_file():
            continue
        if name.endswith(".index.json"):
            shards = sorted(set(json.loads(path.read_text())["weight_map"].values()))
            sd: dict[str, torch.Tensor] = {}
            for shard in shards:
                sd.update(_load_file(directory / shard))
            return sd
        return _load_file(path)
    raise FileNotFoundError(f"no weights in {directory}: expected one of {', '.join(_WEIGHT_FILES)}")


def _convert(sd: dict[str, torch.Tensor], cfg: MambaConfig) -> dict[str, torch.Tensor]:
    """transformers' names -> mamba_ssm's, and drop the tied head (it is the embedding)."""
    out = {}
    for k, v in sd.items():
        if k.startswith("backbone.embeddings."):
            k = "backbone.embedding." + k[len("backbone.embeddings.") :]
        out[k] = v
    if cfg.tie_embeddings:
        out.pop("lm_head.weight", None)
    return out


def _check_keys(sd: dict[str, torch.Tensor], model: MambaLM, where: str) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if model.config.tie_embeddings:
        expected.pop("lm_head.weight")
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    misshaped = [
        f"{k}: checkpoint {tuple(sd[k].shape)}, model {expected[k]}"
        for k in sorted(set(sd) & set(expected))
        if tuple(sd[k].shape) != expected[k]
    ]
    if missing or unexpected or misshaped:
        lines = [f"the checkpoint in {where} does not fit MambaLM({model.config}):"]
        for title, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
            if items:
                lines.append(
                    f"  {title} ({len(items)}): "
                    + ", ".join(items[:20])
                    + (" ..." if len(items) > 20 else "")
                )
        raise ValueError("\n".join(lines))


def load_pretrained(name_or_dir: str | os.PathLike, dtype: torch.dtype | None = None, device=None) -> MambaLM:
    """Build a :class:`MambaLM` from a checkpoint directory or hub id; eval mode, in ``dtype`` on ``device``."""
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating torch.dtype or None, got {dtype!r}")
    directory = resolve(name_or_dir)
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"no config.json in {directory}")
    cfg, _layout = config_from_dict(json.loads(config_path.read_text()))
    with torch.device("meta"):  # no memory and no random init: every tensor comes from the checkpoint
        model = MambaLM(cfg)
    sd = _convert(load_state_dict(directory), cfg)
    _check_keys(sd, model, str(name_or_dir))
    model.load_state_dict(sd, strict=False, assign=True)
    if cfg.tie_embeddings:
        model.lm_head.weight = model.backbone.embedding.weight
    model = model.to(device=device)
    if dtype is not None:
        # as mamba_ssm: A_log and D stay in fp32 when the rest runs in 16 bits (exp(ΔA) needs the precision)
        keep = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
        for name, p in model.named_parameters():
            p.data = p.data.to(keep if name.endswith(("A_log", ".D")) else dtype)
    return model.eval()


def mamba_ssm_twin(
    d_model: int = 768,
    n_layer: int = 24,
    vocab_size: int = 50277,
    device="cuda",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> tuple:
    """A model of mamba_ssm (``MambaLMHeadModel``, Mamba-1 layers, fused add + norm, residual in fp32; the
    130M shape by default) with random weights, and the same weights in a :class:`MambaLM`: written by
    mamba_ssm's ``save_pretrained``, read back by ``MambaLM.from_pretrained``. Returns (theirs, ours), both
    in eval mode. Needs mamba_ssm importable (``scripts/build_peers.py`` builds it for the local GPU)."""
    import tempfile  # noqa: PLC0415

    from mamba_ssm.models.config_mamba import MambaConfig as PeerConfig  # noqa: PLC0415
    from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel  # noqa: PLC0415

    torch.manual_seed(seed)
    peer_cfg = PeerConfig(
        d_model=d_model,
        n_layer=n_layer,
        vocab_size=vocab_size,
        ssm_cfg={"layer": "Mamba1"},
        rms_norm=True,
        residual_in_fp32=True,
        fused_add_norm=True,
        pad_vocab_size_multiple=8,
    )
    theirs = MambaLMHeadModel(peer_cfg, device=device, dtype=dtype).eval()
    with tempfile.TemporaryDirectory() as tmp:
        theirs.save_pretrained(tmp)
        ours = MambaLM.from_pretrained(tmp, dtype=dtype, device=device).eval()
    return theirs, ours
