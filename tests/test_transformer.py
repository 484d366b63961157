"""Transformer++ (Mamba §4.2.1 baseline): forward against a float64 reference written here (RoPE, SwiGLU,
RMSNorm, causal softmax attention), the preallocated KV cache against the parallel forward, generation,
the closed-form parameter count, and the paper's parameter-matched (Mamba, Transformer++) pairs."""

import math

import pytest
import torch

from minimamba.generate import generate
from minimamba.model import MambaLM, param_count
from minimamba.testing import check_close
from minimamba.transformer import (
    StaticKVCache,
    TransformerPP,
    TransformerPPConfig,
    matched_pairs,
    tpp_param_count,
)

VOCAB = 37  # padded to 40: the logits have 3 columns that belong to no token


def tiny(dtype=torch.float64, **kw) -> TransformerPP:
    """A tiny model with every weight moved far from its init (norm weights are not all ones, so a
    misplaced norm shows), in ``dtype``."""
    cfg = dict(vocab_size=VOCAB, d_model=16, n_layer=2, n_head=2, d_mlp=24, max_len=32, rope_base=100.0)
    torch.manual_seed(0)
    m = TransformerPP(TransformerPPConfig(**(cfg | kw))).to(dtype).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return m


# ------------------------------------------------------------------------------------------------------
# The reference: float64, per position and per head, written from the definitions.
# ------------------------------------------------------------------------------------------------------


def ref_rmsnorm(x, w, eps):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w


def ref_rope(x, base):
    """x (L, hd) for one head: pair (i, i + hd/2) is the complex number x_i + j·x_{i+hd/2}, multiplied by
    exp(j · p · base^(-2i/hd)) at position p."""
    L, hd = x.shape
    out = torch.empty_like(x)
    for p in range(L):
        for i in range(hd // 2):
            theta = p * base ** (-2 * i / hd)
            z = complex(x[p, i], x[p, i + hd // 2]) * complex(math.cos(theta), math.sin(theta))
            out[p, i], out[p, i + hd // 2] = z.real, z.imag
    return out


def ref_forward(model: TransformerPP, ids: torch.Tensor) -> torch.Tensor:
    """ids (batch, L) -> logits (batch, L, padded_vocab) in float64, loops over batch, heads and queries."""
    c = model.config
    W = {k: v.detach().double() for k, v in model.state_dict().items()}
    hd, eps = c.d_model // c.n_head, c.norm_eps
    out = []
    for b in range(ids.shape[0]):
        x = W["embedding.weight"][ids[b]]  # (L, d)
        L = x.shape[0]
        for i in range(c.n_layer):
            p = f"layers.{i}."
            h = ref_rmsnorm(x, W[p + "attn_norm.weight"], eps)
            q, k, v = (h @ W[p + "wqkv.weight"].T).split(c.d_model, dim=-1)  # (L, d) each
            heads = []
            for n in range(c.n_head):
                sl = slice(n * hd, (n + 1) * hd)
                qn, kn, vn = ref_rope(q[:, sl], c.rope_base), ref_rope(k[:, sl], c.rope_base), v[:, sl]
                o = torch.empty(L, hd, dtype=torch.float64)
                for t in range(L):  # query t sees keys 0..t
                    s = kn[: t + 1] @ qn[t] / math.sqrt(hd)  # (t + 1,)
                    a = torch.exp(s - s.max())
                    o[t] = (a / a.sum()) @ vn[: t + 1]
                heads.append(o)
            x = x + torch.cat(heads, dim=-1) @ W[p + "wo.weight"].T
            h = ref_rmsnorm(x, W[p + "mlp_norm.weight"], eps)
            g = h @ W[p + "w_gate.weight"].T
            x = x + (g / (1 + torch.exp(-g)) * (h @ W[p + "w_up.weight"].T)) @ W[p + "w_down.weight"].T
        x = ref_rmsnorm(x, W["norm_f.weight"], eps)
        out.append(x @ W["lm_head.weight"].T)
    return torch.stack(out)


@pytest.mark.parametrize("L", [1, 7])
def test_forward_equals_float64_reference(L):
    model = tiny(torch.float64)
    ids = torch.randint(0, VOCAB, (2, L))
    ref = ref_forward(model, ids)
    with torch.no_grad():
        check_close("fp64 logits", ref, model(ids), rtol=1e-10, atol=1e-10)
        # fp32 model, same weights: rounding of ~d_model-term dot products through 2 layers
        check_close("fp32 logits", ref, model.float()(ids), rtol=1e-4, atol=1e-4)


def test_untied_head_and_gradients_equal_reference():
    model = tiny(torch.float64, tie_embeddings=False)
    assert model.lm_head.weight is not model.embedding.weight
    ids = torch.randint(0, VOCAB, (2, 5))
    with torch.no_grad():
        check_close("untied logits", ref_forward(model, ids), model(ids), rtol=1e-10, atol=1e-10)
    # gradients: autograd through the model against central differences of the reference
    w = torch.randn(2, 5, 40, dtype=torch.float64)
    (model(ids) * w).sum().backward()
    params, eps = dict(model.named_parameters()), 1e-6
    for name in [
        "embedding.weight",
        "layers.0.attn_norm.weight",
        "layers.1.wqkv.weight",
        "layers.0.w_down.weight",
    ]:
        p, idx = (
            params[name],
            (int(ids[0, 0]), 0) if name == "embedding.weight" else (0,) * params[name].dim(),
        )
        with torch.no_grad():
            orig = p[idx].item()
            p[idx] = orig + eps
            up = (ref_forward(model, ids) * w).sum()
            p[idx] = orig - eps
            down = (ref_forward(model, ids) * w).sum()
            p[idx] = orig
        # central differences: O(eps²) truncation ~1e-12 plus cancellation ~1e-16 · |loss| / eps ~1e-9
        check_close(
            f"d loss / d {name}{list(idx)}", (up - down) / (2 * eps), p.grad[idx], rtol=1e-6, atol=1e-7
        )


def test_causal():
    """Changing token t changes no logit before t (and does change those from t on)."""
    model = tiny(torch.float64)
    ids = torch.randint(0, VOCAB, (2, 9))
    other = ids.clone()
    other[:, 5] = (ids[:, 5] + 1) % VOCAB
    with torch.no_grad():
        a, b = model(ids), model(other)
    check_close("logits before the change", a[:, :5], b[:, :5], rtol=0, atol=1e-13)
    assert (a[:, 5:] - b[:, 5:]).abs().amax(-1).min() > 1e-6


# ------------------------------------------------------------------------------------------------------
# The preallocated KV cache
# ------------------------------------------------------------------------------------------------------

# fp64: the cached path does the same arithmetic on the same numbers up to summation order, so ~1e-12;
# fp32: a few ulps of logits of size ~10 through 2 layers
TOL = {torch.float64: dict(rtol=1e-10, atol=1e-11), torch.float32: dict(rtol=1e-4, atol=1e-5)}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_steps_equal_parallel_forward(dtype):
    model = tiny(dtype)
    ids = torch.randint(0, VOCAB, (3, 11))
    cache = model.init_cache(3)
    assert isinstance(cache, StaticKVCache) and cache.max_len == 32 and cache.keys[0].dtype == dtype
    with torch.no_grad():
        full = model(ids)
        steps = torch.stack([model.step(ids[:, t], cache) for t in range(11)], dim=1)
    assert cache.seqlen == 11
    check_close(f"step-by-step vs forward ({dtype})", full, steps, **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_prefill_chunks_and_steps_equal_forward(dtype):
    """Prefill 4, a chunk of 3 at positions 4..6 (the offset causal mask), then single steps."""
    model = tiny(dtype)
    ids = torch.randint(0, VOCAB, (2, 10))
    cache = model.init_cache(2, max_len=10)
    ptrs = [t.data_ptr() for t in [*cache.keys, *cache.values]]
    tensors = [*cache.keys, *cache.values]
    with torch.no_grad():
        full = model(ids)
        parts = [model(ids[:, :4], cache=cache), model(ids[:, 4:7], cache=cache)]
        parts += [model.step(ids[:, t], cache)[:, None] for t in range(7, 10)]
    check_close(f"prefill + chunk + steps vs forward ({dtype})", full, torch.cat(parts, dim=1), **TOL[dtype])
    # written in place: the same tensors, the same storage, full now
    assert [t.data_ptr() for t in [*cache.keys, *cache.values]] == ptrs
    assert all(a is b for a, b in zip(tensors, [*cache.keys, *cache.values]))
    assert cache.seqlen == cache.max_len == 10


def test_cache_in_another_dtype():
    """An fp32 cache for an fp64 model: keys and values are rounded once to fp32 when stored, so the logits
    move by about fp32's epsilon times their size, no more."""
    model = tiny(torch.float64)
    ids = torch.randint(0, VOCAB, (2, 6))
    cache = model.init_cache(2, max_len=6, dtype=torch.float32)
    with torch.no_grad():
        full = model(ids)
        out = torch.cat([model(ids[:, :3], cache=cache), model(ids[:, 3:], cache=cache)], dim=1)
    assert cache.keys[0].dtype == torch.float32 and out.dtype == torch.float64
    check_close("fp32 cache, fp64 model", full, out, rtol=1e-4, atol=1e-5)


def test_cache_holds_rotated_keys_and_zeros_beyond():
    """What the cache holds: the rotated keys and the values of the filled positions, zeros after them."""
    model = tiny(torch.float64)
    ids = torch.randint(0, VOCAB, (1, 6))
    cache = model.init_cache(1, max_len=8)
    nbytes = cache.nbytes()
    with torch.no_grad():
        model(ids, cache=cache)
    assert cache.nbytes() == nbytes == 2 * 2 * 1 * 2 * 8 * 8 * 8  # 2 layers · (K, V) · batch · heads · 8 · hd
    c = model.config
    W = {k: v.detach() for k, v in model.state_dict().items()}
    x = W["embedding.weight"][ids[0]]
    h = x / torch.sqrt((x * x).mean(-1, keepdim=True) + c.norm_eps) * W["layers.0.attn_norm.weight"]
    _, k, v = (h @ W["layers.0.wqkv.weight"].T).split(c.d_model, dim=-1)  # (6, d)
    k1 = ref_rope(k[:, 8:], c.rope_base)  # head 1
    check_close("cached keys, layer 0 head 1", k1, cache.keys[0][0, 1, :6], rtol=1e-12, atol=1e-12)
    check_close("cached values, layer 0 head 1", v[:, 8:], cache.values[0][0, 1, :6], rtol=0, atol=1e-13)
    assert not cache.keys[1][:, :, 6:].any() and not cache.values[1][:, :, 6:].any()


def test_cache_full_and_bad_cache_arguments():
    model = tiny(torch.float64)
    ids = torch.randint(0, VOCAB, (2, 4))
    cache = model.init_cache(2, max_len=5)
    with torch.no_grad():
        model(ids, cache=cache)
        model.step(ids[:, 0], cache)  # the fifth and last slot
        with pytest.raises(ValueError, match="KV cache full.*max_len=5"):
            model.step(ids[:, 0], cache)
        with pytest.raises(ValueError, match="KV cache full"):
            model(ids, cache=model.init_cache(2, max_len=3))  # a prefill longer than the cache
        with pytest.raises(ValueError, match="batch"):
            model(ids, cache=model.init_cache(3, max_len=5))
        with pytest.raises(ValueError, match="input_ids must have shape \\(batch,\\)"):
            model.step(ids[:, :1], model.init_cache(2))  # step takes (batch,), as MambaLM.step
        with pytest.raises(ValueError, match="max_len=32"):
            model(torch.zeros(1, 33, dtype=torch.long))
    assert cache.seqlen == 5  # the refused step wrote nothing and counted nothing
    for bad in (0, 33, 2.0):
        with pytest.raises(ValueError, match="max_len"):
            model.init_cache(2, max_len=bad)
    with pytest.raises(ValueError, match="batch_size"):
        model.init_cache(0)


# ------------------------------------------------------------------------------------------------------
# Generation, as MambaLM does it
# ------------------------------------------------------------------------------------------------------


def test_generate_greedy_equals_argmax_of_full_forwards():
    model = tiny(torch.float64)
    ids = torch.randint(0, VOCAB, (3, 5))
    out = generate(model, ids, max_new_tokens=8, temperature=0)
    ref = ids
    with torch.no_grad():
        for _ in range(8):
            ref = torch.cat([ref, model(ref)[:, -1, :VOCAB].argmax(-1)[:, None]], dim=1)
    assert torch.equal(out, ref)
    assert len(set(out[0, 5:].tolist())) > 1  # not a trivially constant continuation
    sampled = generate(model, ids[0], 20, generator=torch.Generator().manual_seed(1))
    assert sampled.shape == (25,) and sampled.max() < VOCAB  # padded rows (37 -> 40) never sampled
    with pytest.raises(ValueError, match="need 33 positions, more than the model's max_len=32"):
        generate(model, ids, max_new_tokens=29)  # 5 + 28 positions > max_len = 32
    assert generate(model, ids, max_new_tokens=28, temperature=0).shape == (3, 33)  # 5 + 27 fit exactly


# ------------------------------------------------------------------------------------------------------
# Parameter counts and the paper's matched pairs
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [
        dict(vocab_size=37, d_model=16, n_layer=2, n_head=2, d_mlp=24),
        dict(vocab_size=37, d_model=16, n_layer=2, n_head=2, d_mlp=24, tie_embeddings=False),
        dict(vocab_size=101, d_model=24, n_layer=3, n_head=6, pad_vocab_size_multiple=16),
        dict(vocab_size=8, d_model=64, n_layer=1, n_head=1),  # d_mlp from Llama's rule: 256
    ],
)
def test_closed_form_param_count_equals_num_params(kw):
    model = TransformerPP(TransformerPPConfig(**kw))
    print(kw, model.num_params())
    assert tpp_param_count(model.config) == model.num_params()


def test_llama_d_mlp_rule():
    """int(8/3 · d) rounded up to a multiple of 256: Llama-7B (d_model 4096) has its published 11008."""
    assert TransformerPPConfig(vocab_size=8, d_model=4096, n_head=32).d_mlp == 11008
    for d in (64, 768, 1024, 1536, 2048):
        f = TransformerPPConfig(vocab_size=8, d_model=d, n_head=d // 64).d_mlp
        assert f % 256 == 0 and int(8 * d / 3) <= f < int(8 * d / 3) + 256, (d, f)


def test_matched_pairs_within_5_percent():
    pairs = matched_pairs()
    assert [(p.mamba.n_layer, p.transformer.n_layer, p.mamba.d_model) for p in pairs] == [
        (24, 12, 768),
        (48, 24, 1024),
        (48, 24, 1536),
        (48, 24, 2048),
    ]
    for p in pairs:
        assert p.mamba.d_model == p.transformer.d_model and p.transformer.head_dim in (64, 96)
        assert p.mamba.padded_vocab_size == p.transformer.padded_vocab_size == 50280
        n_mamba, n_tpp = p.counts()
        gap = n_mamba / n_tpp - 1
        print(f"{p.mamba_name:>11} {n_mamba:>13,}  {p.transformer_name:>19} {n_tpp:>13,}  {gap:+.2%}")
        assert abs(gap) < 0.05


def test_matched_pair_counts_equal_built_models_scaled_down():
    """The pair construction at a small width and the same layer ratio: counts from configs = built models."""
    pair = matched_pairs(vocab_size=97, max_len=16)[0]
    m = pair.mamba.__class__(**(pair.mamba.to_dict() | dict(d_model=32, n_layer=4)))
    t = TransformerPPConfig(vocab_size=97, d_model=32, n_layer=2, n_head=2, max_len=16)
    assert param_count(m) == MambaLM(m).num_params()
    assert tpp_param_count(t) == TransformerPP(t).num_params()


# ------------------------------------------------------------------------------------------------------
# Config validation
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("vocab_size", 0),
        ("d_model", -1),
        ("n_layer", 0),
        ("n_head", 0),
        ("d_mlp", 0),
        ("max_len", 0),
        ("max_len", 2.0),
        ("rope_base", 0.0),
        ("rope_base", float("inf")),
        ("norm_eps", -1e-5),
        ("tie_embeddings", 1),
        ("pad_vocab_size_multiple", True),
        ("n_head", 3),  # 16 is not divisible by 3
        ("n_head", 16),  # head dim 1: odd, RoPE needs pairs
    ],
)
def test_bad_config_raises_naming_the_field(field, value):
    kw = dict(vocab_size=37, d_model=16, n_layer=2, n_head=2) | {field: value}
    with pytest.raises(ValueError, match=field):
        TransformerPPConfig(**kw)


def test_wrong_config_type():
    with pytest.raises(TypeError, match="TransformerPPConfig"):
        TransformerPP(dict(vocab_size=3))
    with pytest.raises(TypeError, match="TransformerPPConfig"):
        tpp_param_count(matched_pairs()[0].mamba)
