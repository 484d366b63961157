"""Checkpoint loading in both layouts, against transformers' MambaForCausalLM as the oracle. No network."""

import json
import sys

import pytest
import torch

from minimamba.model import MambaLM
from minimamba.pretrained import config_from_dict, load_pretrained
from minimamba.testing import rel_error

transformers = pytest.importorskip("transformers")

VOCAB, PADDED = 101, 104  # the original layout pads 101 to a multiple of 8; the -hf layout stores 104


@pytest.fixture(scope="module")
def hf_model():
    torch.manual_seed(0)
    cfg = transformers.MambaConfig(
        vocab_size=PADDED,
        hidden_size=32,
        state_size=8,
        num_hidden_layers=2,
        expand=2,
        conv_kernel=4,
        time_step_rank="auto",
        tie_word_embeddings=True,
    )
    model = transformers.MambaForCausalLM(cfg).eval()
    with torch.no_grad():  # away from the init: every parameter must be loaded, not re-created
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def ids():
    return torch.randint(0, VOCAB, (2, 13), generator=torch.Generator().manual_seed(1))


def _write_original(hf, directory, **config_overrides):
    """The mamba_ssm layout, written by hand: config.json + pytorch_model.bin with backbone.embedding."""
    directory.mkdir()
    c = hf.config
    config = {
        "d_model": c.hidden_size,
        "n_layer": c.num_hidden_layers,
        "vocab_size": VOCAB,
        "ssm_cfg": {"d_state": c.state_size},
        "rms_norm": True,
        "residual_in_fp32": True,
        "fused_add_norm": True,
        "pad_vocab_size_multiple": 8,
    }
    config.update(config_overrides)
    (directory / "config.json").write_text(json.dumps(config))
    sd = {k.replace("backbone.embeddings.", "backbone.embedding."): v for k, v in hf.state_dict().items()}
    torch.save(sd, directory / "pytorch_model.bin")
    return sd


def test_hf_layout_logits(hf_model, ids, tmp_path):
    hf_model.save_pretrained(tmp_path / "hf")
    ours = MambaLM.from_pretrained(tmp_path / "hf")
    with torch.no_grad():
        err = rel_error(hf_model(ids).logits, ours(ids))
    print(f"-hf layout: relative error vs transformers {err:.2e}")
    assert err <= 1e-5
    assert ours.config.padded_vocab_size == PADDED and not ours.training


def test_original_layout_logits(hf_model, ids, tmp_path):
    _write_original(hf_model, tmp_path / "orig")
    ours = load_pretrained(str(tmp_path / "orig"))
    assert ours.config.vocab_size == VOCAB and ours.config.padded_vocab_size == PADDED
    assert ours.lm_head.weight is ours.backbone.embedding.weight
    with torch.no_grad():
        err = rel_error(hf_model(ids).logits, ours(ids))
    print(f"original layout: relative error vs transformers {err:.2e}")
    assert err <= 1e-5


def test_dtype_keeps_A_log_fp32(hf_model, tmp_path):
    _write_original(hf_model, tmp_path / "orig")
    m = load_pretrained(tmp_path / "orig", dtype=torch.bfloat16)
    mixer = m.backbone.layers[0].mixer
    assert mixer.in_proj.weight.dtype == torch.bfloat16 and mixer.A_log.dtype == torch.float32
    assert m(torch.zeros(1, 3, dtype=torch.long)).dtype == torch.bfloat16


def test_missing_and_misshaped_keys(hf_model, tmp_path):
    d = tmp_path / "bad"
    sd = _write_original(hf_model, d)
    del sd["backbone.layers.1.mixer.D"]
    sd["backbone.layers.0.mixer.A_log"] = torch.zeros(64, 3)
    sd["backbone.layers.0.mixer.extra"] = torch.zeros(1)
    torch.save(sd, d / "pytorch_model.bin")
    with pytest.raises(ValueError) as e:
        load_pretrained(d)
    msg = str(e.value)
    assert "missing (1): backbone.layers.1.mixer.D" in msg
    assert "unexpected (1): backbone.layers.0.mixer.extra" in msg
    assert "backbone.layers.0.mixer.A_log: checkpoint (64, 3), model (64, 8)" in msg


def test_wrong_config_sizes(hf_model, tmp_path):
    _write_original(hf_model, tmp_path / "wrong", n_layer=3)
    with pytest.raises(ValueError, match=r"missing \(\d+\): backbone.layers.2"):
        load_pretrained(tmp_path / "wrong")


@pytest.mark.parametrize(
    "config, match",
    [
        ({"foo": 1}, "not a Mamba config"),
        ({"hidden_size": 8, "num_hidden_layers": 1, "vocab_size": 8, "model_type": "mamba2"}, "model_type"),
        ({"d_model": 8, "n_layer": 1, "vocab_size": 8, "ssm_cfg": {"layer": "Mamba2"}}, "Mamba1"),
        ({"d_model": 8, "n_layer": 1, "vocab_size": 8, "ssm_cfg": {"ngroups": 2}}, "ngroups"),
        ({"d_model": 8, "n_layer": 1, "vocab_size": 8, "rms_norm": False}, "rms_norm"),
        ({"d_model": 8, "n_layer": 1, "vocab_size": 8, "d_intermediate": 32}, "d_intermediate"),
        ({"d_model": 8, "n_layer": 1, "vocab_size": 8, "attn_layer_idx": [0]}, "attention"),
        ({"d_model": 0, "n_layer": 1, "vocab_size": 8}, "d_model"),
    ],
)
def test_bad_configs(config, match):
    with pytest.raises(ValueError, match=match):
        config_from_dict(config)


def test_config_130m():
    """The published mamba-130m config.json (original layout) gives the published sizes."""
    cfg, layout = config_from_dict(
        {
            "d_model": 768,
            "n_layer": 24,
            "vocab_size": 50277,
            "ssm_cfg": {},
            "rms_norm": True,
            "residual_in_fp32": True,
            "fused_add_norm": True,
            "pad_vocab_size_multiple": 8,
        }
    )
    assert layout == "original"
    assert (cfg.d_inner, cfg.d_state, cfg.dt_rank, cfg.padded_vocab_size) == (1536, 16, 48, 50280)


def test_not_found_and_no_hub(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="neither"):
        load_pretrained(str(tmp_path / "nope" / "deeper"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_pretrained(tmp_path / "empty")
    (tmp_path / "empty" / "config.json").write_text(json.dumps({"d_model": 8, "n_layer": 1, "vocab_size": 8}))
    with pytest.raises(FileNotFoundError, match="no weights"):
        load_pretrained(tmp_path / "empty")
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # as if not installed: import fails
    with pytest.raises(ImportError, match="pip install huggingface_hub"):
        load_pretrained("state-spaces/mamba-130m")
    with pytest.raises(TypeError, match="dtype"):
        load_pretrained(tmp_path / "empty", dtype="float16")


def test_sharded_safetensors(hf_model, ids, tmp_path):
    """A checkpoint split in shards listed by model.safetensors.index.json loads like a single file."""
    from safetensors.torch import save_file

    d = tmp_path / "sharded"
    d.mkdir()
    hf_model.config.to_json_file(d / "config.json")
    sd = {k: v.contiguous() for k, v in hf_model.state_dict().items() if k != "lm_head.weight"}
    keys = sorted(sd)
    shards = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    for name, ks in shards.items():
        save_file({k: sd[k] for k in ks}, str(d / name))
    index = {"weight_map": {k: name for name, ks in shards.items() for k in ks}}
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    with torch.no_grad():
        assert rel_error(hf_model(ids).logits, load_pretrained(d)(ids)) <= 1e-5
