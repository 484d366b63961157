"""MambaLM against transformers' MambaForCausalLM (the independent oracle), caching, causality, counts."""

import pytest
import torch

from minimamba.config import MambaConfig
from minimamba.model import MambaLM, param_count
from minimamba.testing import check_close, rel_error

transformers = pytest.importorskip("transformers")


def _hf_model(vocab=101, hidden=32, layers=2, state=8, seed=0):
    torch.manual_seed(seed)
    cfg = transformers.MambaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        state_size=state,
        num_hidden_layers=layers,
        expand=2,
        conv_kernel=4,
        time_step_rank="auto",
        use_bias=False,
        use_conv_bias=True,
        residual_in_fp32=True,
        layer_norm_epsilon=1e-5,
        tie_word_embeddings=True,
    )
    hf = transformers.MambaForCausalLM(cfg).eval()
    with torch.no_grad():  # move away from the init, so that a wrong A_log/D/bias cannot hide
        for p in hf.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return hf


def _ours_from_hf(hf) -> MambaLM:
    c = hf.config
    cfg = MambaConfig(
        d_model=c.hidden_size,
        n_layer=c.num_hidden_layers,
        vocab_size=c.vocab_size,
        d_state=c.state_size,
        d_conv=c.conv_kernel,
        expand=c.expand,
        dt_rank=c.time_step_rank,
        pad_vocab_size_multiple=1,
        norm_eps=c.layer_norm_epsilon,
    )
    model = MambaLM(cfg).eval()
    sd = {k.replace("backbone.embeddings.", "backbone.embedding."): v for k, v in hf.state_dict().items()}
    model.load_state_dict(sd)
    return model


def test_logits_equal_transformers_state_dict():
    hf = _hf_model()
    ours = _ours_from_hf(hf)
    ids = torch.randint(0, 101, (2, 11))
    with torch.no_grad():
        ref = hf(ids).logits
        out = ours(ids)
    err = rel_error(ref, out)
    print(f"relative error vs transformers: {err:.2e}")
    assert err <= 1e-5


@pytest.mark.parametrize("selective", [True, False])
def test_step_and_prefill_equal_forward(selective):
    cfg = MambaConfig(d_model=16, n_layer=2, vocab_size=37, d_state=4, selective=selective)
    m = MambaLM(cfg).double().eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ids = torch.randint(0, 37, (2, 9))
    with torch.no_grad():
        full = m(ids)
        cache = m.init_cache(2)
        steps = torch.stack([m.step(ids[:, t], cache) for t in range(9)], dim=1)
        check_close("step vs forward", full, steps, rtol=1e-5, atol=1e-8)
        assert cache.seqlen == 9
        cache2 = m.init_cache(2)
        pre = m(ids[:, :5], cache=cache2)
        rest = torch.stack([m.step(ids[:, t], cache2) for t in range(5, 9)], dim=1)
        check_close("prefill + steps vs forward", full, torch.cat([pre, rest], 1), rtol=1e-5, atol=1e-8)


def test_step_equals_forward_fp32():
    cfg = MambaConfig(d_model=16, n_layer=2, vocab_size=37, d_state=4)
    m = MambaLM(cfg).eval()
    ids = torch.randint(0, 37, (2, 9))
    with torch.no_grad():
        full = m(ids)
        cache = m.init_cache(2)
        steps = torch.stack([m.step(ids[:, t], cache) for t in range(9)], dim=1)
    assert rel_error(full, steps) <= 1e-5


@pytest.mark.parametrize("selective", [True, False])
def test_causal(selective):
    cfg = MambaConfig(d_model=16, n_layer=2, vocab_size=37, d_state=4, selective=selective)
    m = MambaLM(cfg).double().eval()
    ids = torch.randint(0, 37, (1, 12))
    with torch.no_grad():
        y = m(ids)
        for t in (0, 5, 11):
            ids2 = ids.clone()
            ids2[0, t] = (ids2[0, t] + 1) % 37
            y2 = m(ids2)
            if selective:
                assert torch.equal(y[:, :t], y2[:, :t])
            else:  # the LTI block's FFT convolution: causal in exact arithmetic, its rounding reaches every output
                assert torch.allclose(y[:, :t], y2[:, :t], rtol=0, atol=1e-12)
            assert not torch.allclose(y[:, t], y2[:, t])


@pytest.mark.parametrize(
    "kw",
    [
        dict(d_model=16, n_layer=2, vocab_size=37),
        dict(d_model=16, n_layer=3, vocab_size=37, selective=False),
        dict(
            d_model=24, n_layer=1, vocab_size=50, bias=True, conv_bias=False, tie_embeddings=False, dt_rank=5
        ),
    ],
)
def test_param_count(kw):
    cfg = MambaConfig(**kw)
    assert MambaLM(cfg).num_params() == param_count(cfg)


def test_param_count_130m():
    """mamba-130m: d_model 768, 24 layers, vocab 50277 -> 50280; built on the meta device (no memory)."""
    cfg = MambaConfig(d_model=768, n_layer=24, vocab_size=50277)
    with torch.device("meta"):
        m = MambaLM(cfg)
    assert m.num_params() == param_count(cfg) == 129_135_360


def test_parameter_names_are_mamba_ssm():
    m = MambaLM(MambaConfig(d_model=16, n_layer=2, vocab_size=37))
    names = set(m.state_dict())
    for n in [
        "backbone.embedding.weight",
        "backbone.layers.1.norm.weight",
        "backbone.layers.0.mixer.in_proj.weight",
        "backbone.layers.0.mixer.conv1d.weight",
        "backbone.layers.0.mixer.conv1d.bias",
        "backbone.layers.0.mixer.x_proj.weight",
        "backbone.layers.0.mixer.dt_proj.weight",
        "backbone.layers.0.mixer.dt_proj.bias",
        "backbone.layers.0.mixer.A_log",
        "backbone.layers.0.mixer.D",
        "backbone.layers.0.mixer.out_proj.weight",
        "backbone.norm_f.weight",
        "lm_head.weight",
    ]:
        assert n in names, n
    assert m.lm_head.weight is m.backbone.embedding.weight


def test_init_dt_in_range():
    cfg = MambaConfig(d_model=32, n_layer=2, vocab_size=37, dt_min=0.01, dt_max=0.05)
    m = MambaLM(cfg)
    for layer in m.backbone.layers:
        dt = torch.nn.functional.softplus(layer.mixer.dt_proj.bias.double())
        assert dt.min() >= 0.01 * (1 - 1e-5) and dt.max() <= 0.05 * (1 + 1e-5)


def test_bad_inputs():
    m = MambaLM(MambaConfig(d_model=16, n_layer=1, vocab_size=37))
    with pytest.raises(TypeError, match="input_ids"):
        m(torch.randn(2, 3))
    with pytest.raises(ValueError, match="input_ids"):
        m(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="input_ids"):
        m.step(torch.zeros(2, 3, dtype=torch.long), m.init_cache(2))
    with pytest.raises(TypeError, match="InferenceCache"):
        m.step(torch.zeros(2, dtype=torch.long), None)
    with pytest.raises(ValueError, match="batch_size"):
        m.init_cache(0)
    with pytest.raises(TypeError, match="MambaConfig"):
        MambaLM(dict(d_model=16))
