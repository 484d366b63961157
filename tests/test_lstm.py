"""minimamba.lstm against a float64 LSTM loop written here (the gate equations of PyTorch's nn.LSTM docs,
Hochreiter & Schmidhuber 1997), step-by-step decoding, generate, and the closed-form parameter count."""

import pytest
import torch

from minimamba.generate import generate
from minimamba.lstm import LSTMLM, LSTMCache, LSTMConfig, lstm_param_count
from minimamba.testing import check_close


def reference_logits(model: LSTMLM, ids: torch.Tensor) -> torch.Tensor:
    """ids (batch, L) -> logits (batch, L, V) in float64, one time step and one layer at a time."""
    sd = {k: v.double() for k, v in model.state_dict().items()}
    x = sd["embedding.weight"][ids]  # (batch, L, E)
    batch, L, _ = x.shape
    H = model.config.d_model
    for layer in range(model.config.n_layer):
        W_i, W_h = sd[f"lstm.weight_ih_l{layer}"], sd[f"lstm.weight_hh_l{layer}"]  # (4H, in), (4H, H)
        b = sd[f"lstm.bias_ih_l{layer}"] + sd[f"lstm.bias_hh_l{layer}"]  # (4H,)
        h = torch.zeros(batch, H, dtype=torch.float64)
        c = torch.zeros(batch, H, dtype=torch.float64)
        outs = []
        for t in range(L):
            pre = x[:, t] @ W_i.T + h @ W_h.T + b  # (batch, 4H): rows are the gates i, f, g, o
            i, f, g, o = pre.split(H, dim=-1)
            i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
            c = f * c + i * g
            h = o * torch.tanh(c)
            outs.append(h)
        x = torch.stack(outs, dim=1)  # (batch, L, H): the next layer's input
    return x @ sd["lm_head.weight"].T  # (batch, L, V)


@pytest.mark.parametrize(
    "d_model, n_layer, d_embed, L", [(8, 1, None, 1), (8, 2, None, 7), (6, 3, 5, 13), (3, 1, None, 33)]
)
def test_forward_matches_reference(d_model, n_layer, d_embed, L):
    config = LSTMConfig(vocab_size=11, d_model=d_model, n_layer=n_layer, d_embed=d_embed)
    model = LSTMLM(config)
    ids = torch.randint(0, 11, (2, L))
    ref = reference_logits(model, ids)
    check_close("logits fp32", ref, model(ids).double(), rtol=1e-5, atol=1e-5)
    check_close("logits fp64", ref, model.double()(ids), rtol=1e-12, atol=1e-12)
    assert model(ids).shape == (2, L, config.padded_vocab_size) == (2, L, 16)
    assert (model.lm_head.weight is model.embedding.weight) == (d_embed is None)


def test_long_sequences_go_through_in_pieces(monkeypatch):
    """Past MAX_STEPS_PER_CALL steps (cuDNN's limit, 65,535) the LSTM runs piece by piece with the state
    carried: the same logits as the reference loop, with and without a cache, and gradients still flow."""
    model = LSTMLM(LSTMConfig(vocab_size=11, d_model=6, n_layer=2)).double()
    monkeypatch.setattr(LSTMLM, "MAX_STEPS_PER_CALL", 4)
    calls = []
    model.lstm.register_forward_hook(lambda mod, args, out: calls.append(args[0].shape[1]))
    ids = torch.randint(0, 11, (2, 10))
    ref = reference_logits(model, ids)
    check_close("pieces", ref, model(ids), rtol=1e-12, atol=1e-12)
    assert calls == [4, 4, 2]
    cache = model.init_cache(2)
    last = model(ids, cache=cache, num_last_tokens=1)
    check_close("pieces, cached", ref[:, -1:], last, rtol=1e-12, atol=1e-12)
    model(ids).sum().backward()
    assert model.embedding.weight.grad is not None and model.embedding.weight.grad.abs().sum() > 0


def test_step_equals_forward():
    model = LSTMLM(LSTMConfig(vocab_size=13, d_model=12, n_layer=2)).double()
    ids = torch.randint(0, 13, (3, 9))
    full = model(ids)  # (3, 9, 16)
    cache = model.init_cache(3)
    steps = torch.stack([model.step(ids[:, t], cache) for t in range(9)], dim=1)
    check_close("step vs forward", full, steps, rtol=1e-12, atol=1e-12)
    assert cache.seqlen == 9
    cache2 = model.init_cache(3)  # a prefill of 5 then 4 steps lands on the same state
    pre = model(ids[:, :5], cache=cache2, num_last_tokens=1)
    check_close("prefill last", full[:, 4:5], pre, rtol=1e-12, atol=1e-12)
    rest = torch.stack([model.step(ids[:, t], cache2) for t in range(5, 9)], dim=1)
    check_close("steps after prefill", full[:, 5:], rest, rtol=1e-12, atol=1e-12)
    check_close("h", cache.h, cache2.h, rtol=1e-12, atol=1e-12)
    check_close("c", cache.c, cache2.c, rtol=1e-12, atol=1e-12)


def test_generate_drives_the_lstm():
    model = LSTMLM(LSTMConfig(vocab_size=10, d_model=16, n_layer=2))
    prompt = torch.randint(0, 10, (2, 5))
    out = generate(model, prompt, max_new_tokens=6, temperature=0)
    assert out.shape == (2, 11) and torch.equal(out[:, :5], prompt) and int(out.max()) < 10
    ids = out.clone()  # greedy decoding: each new token is the argmax of a full forward over the prefix
    for t in range(5, 11):
        assert torch.equal(model(ids[:, :t])[:, -1, :10].argmax(-1), ids[:, t])
    g = torch.Generator().manual_seed(0)
    sampled = generate(model, prompt[0], max_new_tokens=4, generator=g, top_k=3)
    assert sampled.shape == (9,)


@pytest.mark.parametrize(
    "d_model, n_layer, d_embed, vocab", [(8, 1, None, 11), (16, 3, None, 85), (6, 2, 4, 7)]
)
def test_param_count(d_model, n_layer, d_embed, vocab):
    config = LSTMConfig(vocab_size=vocab, d_model=d_model, n_layer=n_layer, d_embed=d_embed)
    assert lstm_param_count(config) == LSTMLM(config).num_params()


def test_config_and_input_errors():
    for field, kwargs in [
        ("vocab_size", {"vocab_size": 0}),
        ("d_model", {"vocab_size": 5, "d_model": 0}),
        ("n_layer", {"vocab_size": 5, "n_layer": 1.5}),
        ("d_embed", {"vocab_size": 5, "d_embed": -1}),
    ]:
        with pytest.raises(ValueError, match=f"LSTMConfig.{field}"):
            LSTMConfig(**kwargs)
    model = LSTMLM(LSTMConfig(vocab_size=5, d_model=4, n_layer=1))
    with pytest.raises(TypeError, match="input_ids"):
        model(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="batch"):
        model(torch.zeros(2, 3, dtype=torch.long), cache=model.init_cache(1))
    with pytest.raises(TypeError, match="LSTMCache"):
        model.step(torch.zeros(1, dtype=torch.long), cache=None)
    assert isinstance(model.init_cache(2), LSTMCache) and model.init_cache(2).h.shape == (1, 2, 4)
