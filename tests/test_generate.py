"""Generation: the cached recurrence against re-running the full forward, sampling rules, input checks."""

import pytest
import torch

from minimamba.config import MambaConfig
from minimamba.generate import generate, sample_next
from minimamba.model import MambaLM


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = MambaLM(MambaConfig(d_model=16, n_layer=2, vocab_size=30, d_state=4)).double().eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))  # far from init, so the greedy path is not trivially constant
    return m


def test_greedy_equals_full_forward_loop(model):
    """Greedy with the cache = argmax of the full forward re-run on the growing sequence (no cache)."""
    ids = torch.randint(0, 30, (3, 5))
    out = generate(model, ids, max_new_tokens=6, temperature=0)
    ref = ids
    with torch.no_grad():
        for _ in range(6):
            nxt = model(ref)[:, -1, :30].argmax(-1)
            ref = torch.cat([ref, nxt[:, None]], dim=1)
    assert torch.equal(out, ref)
    assert len(set(out[0, 5:].tolist())) > 1


def test_1d_prompt_and_zero_tokens(model):
    ids = torch.tensor([1, 2, 3])
    assert torch.equal(generate(model, ids, 0), ids[None][0])
    assert generate(model, ids, 4, temperature=0).shape == (7,)


def test_sampling_reproducible_and_in_vocab(model):
    ids = torch.randint(0, 30, (2, 4))
    a = generate(model, ids, 8, generator=torch.Generator().manual_seed(3))
    b = generate(model, ids, 8, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert a.max() < 30  # padded rows (30 -> 32) are never sampled


def test_top_k_1_is_greedy(model):
    ids = torch.randint(0, 30, (2, 4))
    a = generate(model, ids, 5, temperature=1.0, top_k=1)
    assert torch.equal(a, generate(model, ids, 5, temperature=0))


def test_eos_stops(model):
    ids = torch.randint(0, 30, (1, 4))
    greedy = generate(model, ids, 6, temperature=0)
    eos = int(greedy[0, 5])  # the second generated token
    out = generate(model, ids, 6, temperature=0, eos_token_id=eos)
    assert torch.equal(out, greedy[:, :6])


def test_sample_next_rules():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    g = torch.Generator().manual_seed(0)
    draws = lambda **kw: {int(sample_next(logits, generator=g, **kw)) for _ in range(300)}  # noqa: E731
    assert draws(top_k=2) == {0, 1}
    assert draws(top_p=0.5) == {0}  # the first token alone reaches 0.5
    assert draws(top_p=0.79) == {0, 1}  # 0.5 < 0.79, 0.5 + 0.3 >= 0.79
    assert draws() == {0, 1, 2, 3}
    # temperature → 0 concentrates on the argmax; a large temperature flattens
    counts = torch.bincount(
        torch.stack([sample_next(logits, 5.0, generator=g) for _ in range(2000)])[:, 0], minlength=4
    )
    p = torch.softmax(logits[0] / 5.0, -1)
    assert (counts / 2000 - p).abs().max() < 0.05


@pytest.mark.parametrize(
    "kw, exc",
    [
        (dict(temperature=-1.0), ValueError),
        (dict(top_k=0), ValueError),
        (dict(top_p=0.0), ValueError),
        (dict(top_p=1.5), ValueError),
        (dict(max_new_tokens=-1), ValueError),
    ],
)
def test_bad_arguments(model, kw, exc):
    args = dict(max_new_tokens=2)
    args.update(kw)
    with pytest.raises(exc, match=next(iter(kw))):
        generate(model, torch.zeros(1, 3, dtype=torch.long), **args)


def test_bad_ids(model):
    with pytest.raises(TypeError, match="input_ids"):
        generate(model, torch.zeros(1, 3), 2)
    with pytest.raises(ValueError, match="input_ids"):
        generate(model, torch.zeros(1, 0, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="logits"):
        sample_next(torch.zeros(3))


def test_mamba_cache_constant(model):
    cache = model.init_cache(2)
    n0 = cache.nbytes()
    with torch.no_grad():
        model(torch.zeros(2, 7, dtype=torch.long), cache=cache)
        model.step(torch.zeros(2, dtype=torch.long), cache)
    c = model.config
    assert cache.nbytes() == n0 == c.n_layer * 2 * c.d_inner * (c.d_conv + c.d_state) * 8


def test_cuda_graph_needs_a_gpu_and_a_bool(model):
    ids = torch.randint(0, 30, (1, 3))
    with pytest.raises(TypeError, match="cuda_graph must be a bool"):
        generate(model, ids, 4, cuda_graph="yes")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
            generate(model, ids, 4, cuda_graph=True)


@pytest.mark.gpu
@pytest.mark.parametrize("family", ["mamba", "transformer++"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_graph_generation_gives_the_same_tokens(family, dtype):
    """Greedy decoding replayed from a CUDA graph = the same decoding launched op by op (fused kernels on)."""
    from minimamba.transformer import TransformerPP, TransformerPPConfig

    torch.manual_seed(0)
    if family == "mamba":
        m = MambaLM(MambaConfig(d_model=64, n_layer=3, vocab_size=100, d_state=16))
    else:
        m = TransformerPP(TransformerPPConfig(vocab_size=100, d_model=64, n_layer=3, n_head=4, max_len=64))
    m = m.to("cuda", dtype).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
    ids = torch.randint(0, 100, (4, 7), device="cuda")
    eager = generate(m, ids, 20, temperature=0)
    graphed = generate(m, ids, 20, temperature=0, cuda_graph=True)
    again = generate(m, ids, 20, temperature=0, cuda_graph=True)  # the kept graph, its cache emptied
    assert torch.equal(eager, graphed) and torch.equal(eager, again)
    assert len(set(eager[0, 7:].tolist())) > 1
