"""The block's fused training path (``MambaMixer.fused_forward``, ``minimamba/fused.py``) against the readable
one: outputs and every parameter's gradient, for the mixer alone and for the whole language model (where the
residual add + RMSNorm is fused too). On CPU the kernels run in Triton's interpreter (tiny shapes) and both
paths use the same PyTorch scan; on a GPU (marked gpu) both use the Triton scan, in fp32 and under bf16
autocast. Also: which path runs where, and torch.compile of the model.

fp32 tolerances: the two paths add the same terms in different orders (the conv's taps, dt_proj's bias
inside or outside the scan): relative errors of a few 1e-7 per op, 1e-5 through a few layers.
"""

from __future__ import annotations

import contextlib
import weakref

import pytest
import torch

from minimamba.block import MambaMixer
from minimamba.config import MambaConfig
from minimamba.fused import conv_x_proj, conv_x_proj_ref, recomputed, weight_matmul, weight_matmul_split
from minimamba.memory import big_copies
from minimamba.model import MambaLM
from minimamba.testing import check_close, rel_error

TINY = {"d_model": 8, "n_layer": 2, "vocab_size": 19, "d_state": 4}


def _set_fused(model: torch.nn.Module, choice: bool | None) -> None:
    for m in model.modules():
        if isinstance(m, MambaMixer):
            m.fused_forward = choice


def _run(model, inputs, choice, loss_fn):
    """Output and the gradient of every parameter (by name) with the path ``choice``."""
    _set_fused(model, choice)
    model.zero_grad(set_to_none=True)
    out = model(inputs)
    loss_fn(out).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    _set_fused(model, None)
    return out.detach(), grads


def _compare(out_a, grads_a, out_b, grads_b, rtol, atol):
    check_close("output", out_a, out_b, rtol=rtol, atol=atol)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        scale = grads_a[name].abs().max().item()
        check_close(f"d {name}", grads_a[name], grads_b[name], rtol=rtol, atol=atol * max(scale, 1.0))


def test_conv_x_proj_equals_reference():
    """The one autograd node (conv, SiLU, x_proj; u recomputed in the backward) against PyTorch autograd."""
    x = torch.randn(2, 6, 20)[:, :, 3:].transpose(1, 2).contiguous().transpose(1, 2)  # channel stride 1
    w, b, wx = torch.randn(6, 4), torch.randn(6), torch.randn(5, 6)
    gu, gx = torch.randn(2, 6, 17), torch.randn(2, 5, 17)
    results = []
    for fn in (conv_x_proj_ref, conv_x_proj):
        leaves = [t.clone().requires_grad_() for t in (x, w, b, wx)]
        u, x_dbl = fn(*leaves)
        grads = torch.autograd.grad((u * gu).sum() + (x_dbl * gx).sum(), leaves)
        results.append((u, x_dbl, grads))
    (u_r, xd_r, g_r), (u, xd, g) = results
    check_close("u", u_r, u, rtol=1e-5, atol=1e-6)
    check_close("x_dbl", xd_r, xd, rtol=1e-5, atol=1e-5)
    for name, a, c in zip(("dx", "dconv_w", "dconv_b", "dxproj_w"), g_r, g):
        check_close(name, a, c, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("hooked", [False, True])
def test_recomputed_frees_the_saved_tensor_and_recomputes_it(hooked):
    """u * u saves u twice; under ``recomputed`` neither copy is kept (u dies when the forward drops it) and
    the backward recomputes it once per use, with the same gradient. Without it (the control), u lives on."""
    a = torch.randn(5, requires_grad=True)
    calls = []

    def recompute():
        calls.append(1)
        return a.detach() * 2

    u = a * 2
    other = torch.randn(5)
    with recomputed(u, recompute) if hooked else contextlib.nullcontext():
        loss = (u * u).sum() + (other * other.requires_grad_()).sum()  # `other` is saved as usual
    ref = weakref.ref(u)
    del u
    assert (ref() is None) == hooked
    loss.backward()
    check_close("grad", 8 * a.detach(), a.grad, rtol=1e-6, atol=0)
    check_close("other's grad", 2 * other.detach(), other.grad, rtol=1e-6, atol=0)
    assert len(calls) == (2 if hooked else 0)


def test_nested_recomputed_recomputes_both():
    """Two ``recomputed`` contexts, one inside the other (as ``MambaMixer._forward_fused`` opens them for u
    and Δ): PyTorch runs only the innermost saved-tensor hooks, so the inner context must hand the outer
    one's tensor on; both die after the forward and each is recomputed once per use."""
    a = torch.randn(5, requires_grad=True)
    calls = []

    def recipe(name, k):
        def recompute():
            calls.append(name)
            return a.detach() * k

        return recompute

    u, v = a * 2, a * 3
    with recomputed(u, recipe("u", 2)), recomputed(v, recipe("v", 3)):
        loss = (u * u).sum() + (v * v).sum()
    refs = weakref.ref(u), weakref.ref(v)
    del u, v
    assert [r() is None for r in refs] == [True, True]
    loss.backward()
    check_close("grad", 26 * a.detach(), a.grad, rtol=1e-6, atol=0)  # d/da (4a² + 9a²)
    assert sorted(calls) == ["u", "u", "v", "v"]


def test_mixer_fused_equals_readable():
    cfg = MambaConfig(**TINY)
    mixer = MambaMixer(cfg)
    with torch.no_grad():  # a conv bias and dt_proj weights away from their init, so every term matters
        mixer.conv1d.bias.normal_()
        mixer.D.normal_()
    hidden = torch.randn(2, 9, cfg.d_model)
    g = torch.randn(2, 9, cfg.d_model)
    ref = _run(mixer, hidden, False, lambda y: (y * g).sum())
    fused = _run(mixer, hidden, True, lambda y: (y * g).sum())
    assert len(ref[1]) == len(list(mixer.parameters()))
    _compare(*ref, *fused, rtol=1e-5, atol=1e-5)


def test_mixer_fused_equals_readable_with_projection_biases():
    """in_proj's and out_proj's biases (``bias=True``), which the fused path adds after its own products."""
    cfg = MambaConfig(**TINY, bias=True)
    mixer = MambaMixer(cfg)
    with torch.no_grad():
        for lin in (mixer.in_proj, mixer.out_proj):
            lin.bias.normal_()
    hidden, g = torch.randn(2, 7, cfg.d_model), torch.randn(2, 7, cfg.d_model)
    ref = _run(mixer, hidden, False, lambda y: (y * g).sum())
    fused = _run(mixer, hidden, True, lambda y: (y * g).sum())
    assert {"in_proj.bias", "out_proj.bias"} <= ref[1].keys()
    _compare(*ref, *fused, rtol=1e-5, atol=1e-5)


def _x_in(layout: str) -> torch.Tensor:
    x = torch.randn(3, 6, 11, dtype=torch.float64)
    return x.transpose(1, 2).contiguous().transpose(1, 2) if layout == "transposed view" else x


@pytest.mark.parametrize("out_layout", ["BKL", "BLK"])
@pytest.mark.parametrize("layout", ["contiguous", "transposed view"])
def test_weight_matmul_equals_matmul(layout, out_layout):
    """Values and both gradients against torch.matmul (fp64), for x stored either way and both output
    layouts; the output contiguous in its layout, x's gradient in x's layout."""
    w, x = torch.randn(5, 6, dtype=torch.float64), _x_in(layout)
    g = torch.randn(3, 5, 11, dtype=torch.float64)
    got, want = [], []
    for fn, out in ((lambda w, x: weight_matmul(w, x, out_layout=out_layout), got), (torch.matmul, want)):
        leaves = [w.clone().requires_grad_(), x.clone().requires_grad_()]
        y = fn(*leaves)
        y_bkl = y.transpose(1, 2) if fn is not torch.matmul and out_layout == "BLK" else y
        out += [y_bkl.detach(), *torch.autograd.grad(y_bkl, leaves, g)]
        if fn is not torch.matmul:
            assert y.is_contiguous() and y.shape == ((3, 11, 5) if out_layout == "BLK" else (3, 5, 11))
            assert out[-1].stride() == x.stride()  # dx in x's layout: no transposed copy downstream
    for name, a, b in zip(("y", "dw", "dx"), got, want):
        check_close(name, b, a, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layout", ["contiguous", "transposed view"])
def test_weight_matmul_split_equals_the_blocks_of_one_product(layout):
    """in_proj's x and z: the row blocks of w @ x, and in the backward the gradients of the whole (fp64),
    with one of the blocks unused by the loss too."""
    w, x = torch.randn(7, 6, dtype=torch.float64), _x_in(layout)
    g = torch.randn(3, 7, 11, dtype=torch.float64)
    for used in ((True, True), (True, False)):
        leaves = [w.clone().requires_grad_(), x.clone().requires_grad_()]
        a, b = weight_matmul_split(*leaves, (4, 3))
        assert a.is_contiguous() and b.is_contiguous() and (a.shape[1], b.shape[1]) == (4, 3)
        loss = (a * g[:, :4]).sum() + ((b * g[:, 4:]).sum() if used[1] else 0)
        got = [torch.cat([a, b], 1).detach(), *torch.autograd.grad(loss, leaves)]
        ref_leaves = [w.clone().requires_grad_(), x.clone().requires_grad_()]
        y = torch.matmul(*ref_leaves)
        ref_loss = (y[:, :4] * g[:, :4]).sum() + ((y[:, 4:] * g[:, 4:]).sum() if used[1] else 0)
        want = [y.detach(), *torch.autograd.grad(ref_loss, ref_leaves)]
        for name, p, q in zip(("y", "dw", "dx"), got, want):
            check_close(f"{name} {used}", q, p, rtol=1e-12, atol=1e-12)
        assert got[2].stride() == x.stride()
    for needs in ("w", "x"):  # one leaf only: the other's gradient is not computed
        wl = w.clone().requires_grad_(needs == "w")
        xl = x.clone().requires_grad_(needs == "x")
        a, b = weight_matmul_split(wl, xl, (4, 3))
        (leaf,) = [t for t in (wl, xl) if t.requires_grad]
        (grad,) = torch.autograd.grad((a * g[:, :4]).sum() + (b * g[:, 4:]).sum(), leaf)
        rw, rx = w.clone().requires_grad_(needs == "w"), x.clone().requires_grad_(needs == "x")
        (want_grad,) = torch.autograd.grad((torch.matmul(rw, rx) * g).sum(), rw if needs == "w" else rx)
        check_close(f"d{needs} alone", want_grad, grad, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="sizes must add up to w's 7 rows"):
        weight_matmul_split(w, x, (4, 4))
    with pytest.raises(ValueError, match="sizes must be a tuple of positive ints"):
        weight_matmul_split(w, x, [4, 3])


class _Ops(torch.utils._python_dispatch.TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def test_weight_matmul_split_backward_runs_gemms_and_sums_only():
    """The backward of in_proj's two blocks: GEMMs (the second accumulating into the first's result), a
    sum over the batch per block and one concatenation; no zero-filled gradient of a weight slice, no
    add, no copy into another layout (the ops autograd would run for two slices of one weight)."""
    w = torch.randn(8, 6, requires_grad=True)
    x = torch.randn(2, 5, 6).transpose(1, 2).requires_grad_()  # a transposed view, as in_proj's input
    a, b = weight_matmul_split(w, x, (4, 4))
    loss_grads = (torch.randn_like(a), torch.randn_like(b))
    with _Ops() as ops:
        torch.autograd.backward((a, b), loss_grads)
    ran = set(ops.names)
    assert {"bmm", "baddbmm_", "sum", "cat"} <= ran
    assert not ran & {
        "add",
        "add_",
        "fill_",
        "zero_",
        "zeros",
        "new_zeros",
        "copy_",
        "clone",
        "slice_backward",
    }, ran


def test_weight_matmul_under_autocast_runs_in_autocast_dtype():
    w, x = torch.randn(5, 6), torch.randn(2, 6, 9)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = weight_matmul(w, x)
    assert y.dtype == torch.bfloat16
    check_close("bf16 product", torch.matmul(w.bfloat16(), x.bfloat16()).float(), y.float(), 1e-2, 1e-2)
    with pytest.raises(ValueError, match="w must be"):
        weight_matmul(torch.zeros(5), x)
    with pytest.raises(ValueError, match="x must be"):
        weight_matmul(w, torch.zeros(2, 7, 9))
    with pytest.raises(ValueError, match="out_layout must be 'BKL' or 'BLK'"):
        weight_matmul(w, x, out_layout="BDL")
    leaves = [w.clone().requires_grad_(), x.clone().requires_grad_()]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = weight_matmul(*leaves)
    dw, dx = torch.autograd.grad(y.float().sum(), leaves)
    assert dw.dtype == torch.float32 and dx.dtype == torch.float32  # each in its leaf's dtype


def test_fused_mixer_copies_no_activation():
    """Forward and backward of the fused mixer copy no activation of d_model or more channels into another
    layout (every projection is a batched product that writes and reads the layouts its neighbours use,
    out_proj's output included); the readable one copies several, which shows the count sees them. Both
    with the Triton scan, as on a GPU (here in the interpreter): the CPU's chunked PyTorch scan makes copies
    of its own."""
    cfg = MambaConfig(**TINY)
    mixer = MambaMixer(cfg)
    mixer.scan_backend = "triton"
    batch, L = 2, 9
    hidden = torch.randn(batch, L, cfg.d_model, requires_grad=True)
    counts = {}
    for fused in (False, True):
        mixer.fused_forward = fused
        counts[fused] = big_copies(lambda: mixer(hidden).sum().backward(), batch * cfg.d_model * L)
    assert counts[True] == [], counts[True]
    assert len(counts[False]) >= 3, counts[False]


def test_language_model_fused_equals_readable():
    """Every layer's fused mixer and fused add + RMSNorm (and the final norm), logits and all gradients."""
    model = MambaLM(MambaConfig(**TINY))
    ids = torch.randint(0, 19, (2, 7))
    g = torch.randn(2, 7, model.config.padded_vocab_size)
    ref = _run(model, ids, False, lambda y: (y * g).sum())
    fused = _run(model, ids, True, lambda y: (y * g).sum())
    assert len(ref[1]) == len(list(model.parameters()))
    _compare(*ref, *fused, rtol=1e-5, atol=1e-5)


def test_language_model_fused_under_bf16_autocast_is_as_accurate_as_readable():
    """bf16 autocast on CPU, both paths against the fp32 model. The fused norm writes bf16 for in_proj, the
    conv computes in fp32 and dt_proj's bias is added in fp32 in the scan; the readable path casts the fp32
    norm output, convolves in bf16 and adds the bias in bf16. Every gradient of both is within 10% of fp32
    (bf16 keeps 8 bits; a wrong gradient is off by ~100%), and the fused path's mean error is within twice
    the readable one's (Triton 3.7's interpreter truncates fp32 → bf16 where a GPU rounds: a little more
    error on CPU)."""
    model = MambaLM(MambaConfig(d_model=16, n_layer=2, vocab_size=19, d_state=4))
    ids = torch.randint(0, 19, (2, 40))

    def run(choice, autocast=True):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            return _run(model, ids, choice, lambda y: y.float().square().mean())

    out_32, g_32 = run(False, autocast=False)
    (out_r, g_r), (out_f, g_f) = run(False), run(True)
    assert rel_error(out_32, out_f) <= 2 * rel_error(out_32, out_r)
    err_r = {name: rel_error(g_32[name], g_r[name]) for name in g_32}
    err_f = {name: rel_error(g_32[name], g_f[name]) for name in g_32}
    assert max(err_r.values()) <= 0.1 and max(err_f.values()) <= 0.1, (err_r, err_f)
    assert sum(err_f.values()) <= 2 * sum(err_r.values())


def test_fused_forward_is_chosen_on_cuda_only():
    mixer = MambaMixer(MambaConfig(**TINY))
    x = torch.zeros(1, 3, 8)
    assert mixer.fused_forward is None  # auto by default
    assert mixer.uses_fused_forward(x) is False  # a CPU tensor: the readable path
    mixer.fused_forward = False
    assert mixer.uses_fused_forward(x) is False
    mixer.fused_forward = True
    assert mixer.uses_fused_forward(x) is True
    lti = MambaMixer(MambaConfig(**TINY, selective=False))
    lti.fused_forward = True
    assert lti.uses_fused_forward(x) is False  # the LTI ablation has no fused path
    if torch.cuda.is_available():
        mixer.fused_forward = None
        assert mixer.uses_fused_forward(x.cuda())


def test_fused_path_with_cache_uses_the_readable_one():
    """A forward with a cache (prefill) keeps the readable path: the same output either way."""
    model = MambaLM(MambaConfig(**TINY))
    ids = torch.randint(0, 19, (1, 5))
    with torch.no_grad():
        want = model(ids, cache=model.init_cache(1))
        _set_fused(model, True)
        got = model(ids, cache=model.init_cache(1))
    assert torch.equal(want, got)


def test_conv_x_proj_bad_input():
    x = torch.zeros(1, 6, 5)
    with pytest.raises(ValueError, match="xproj_w must be"):
        conv_x_proj(x, torch.zeros(6, 4), None, torch.zeros(5, 7))
    with pytest.raises(ValueError, match="x must be"):
        conv_x_proj(torch.zeros(6, 5), torch.zeros(6, 4), None, torch.zeros(5, 6))
    with pytest.raises(ValueError, match="weight must be"):
        conv_x_proj(x, torch.zeros(6, 7), None, torch.zeros(5, 6))


@pytest.mark.slow
@pytest.mark.parametrize("fused", [False, True])
def test_torch_compile_fullgraph_on_cpu(fused):
    """The model traces into one graph with the readable path and with the fused one (custom ops, run by the
    interpreter), and computes the same. Backend ``aot_eager_decomp_partition``: dynamo, AOTAutograd with
    inductor's decompositions and its min-cut partition of forward and backward, no code generation (the
    inductor backend on CPU compiles C++ for minutes here)."""
    _compiled_equals_eager(MambaLM(MambaConfig(**TINY)), fused)


def _compiled_equals_eager(model, fused):
    ids = torch.randint(0, 19, (2, 6))
    want = _run(model, ids, fused, lambda y: y.square().sum())
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="aot_eager_decomp_partition", fullgraph=True)
    got = _run(compiled, ids, fused, lambda y: y.square().sum())
    got = (got[0], {n.removeprefix("_orig_mod."): g for n, g in got[1].items()})
    _compare(*want, *got, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_torch_compile_does_not_ask_the_environment(monkeypatch):
    """Under torch.compile the scan's backend is decided without ``env.triton_status`` (its
    ``importlib.util.find_spec`` is one dynamo refuses to trace: the H100 run of the fused model's
    fullgraph compile failed there). Here the Triton scan is forced, as "auto" picks it on a GPU, and the
    status query raises if dynamo traces it."""
    from minimamba import env

    real = env.triton_status

    def guarded():
        if torch.compiler.is_compiling():
            raise AssertionError("env.triton_status was traced by torch.compile")
        return real()

    monkeypatch.setattr(env, "triton_status", guarded)
    model = MambaLM(MambaConfig(**TINY))
    for m in model.modules():
        if isinstance(m, MambaMixer):
            m.scan_backend = "triton"
    _compiled_equals_eager(model, True)


# --------------------------------------------------------------------------------------------------------
# GPU: the 130M model's widths (d_model 768, d_inner 1536), two layers.


def _held_for_backward(model, ids) -> int:
    """Bytes a bf16-autocast forward leaves allocated for its backward (memory after the forward, less before,
    less the output itself)."""
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(ids)
    torch.cuda.synchronize()
    return torch.cuda.memory_allocated() - before - out.numel() * out.element_size()


def _gpu_model():
    torch.manual_seed(0)
    return MambaLM(MambaConfig(d_model=768, n_layer=2, vocab_size=1000)).cuda()


@pytest.fixture
def no_tf32():
    """fp32 means fp32: cuDNN's convolutions may otherwise use TF32 (10-bit mantissas) in the readable path."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


@pytest.mark.gpu
def test_fused_equals_readable_on_gpu(no_tf32):
    """fp32: the two paths agree to rounding; bf16 autocast: both within bf16's error of fp32, the fused
    path (conv and the dt bias in fp32) no less accurate on average than the readable one."""
    model = _gpu_model()
    ids = torch.randint(0, 1000, (2, 1024), device="cuda")

    def run(choice, autocast):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            loss = lambda y: torch.nn.functional.cross_entropy(y.flatten(0, 1).float(), ids.flatten())  # noqa: E731
            return _run(model, ids, choice, loss)

    (out_32, g_32), (out_32f, g_32f) = run(False, False), run(True, False)
    assert rel_error(out_32, out_32f) <= 1e-5
    for name in g_32:
        assert rel_error(g_32[name], g_32f[name]) <= 1e-4, name
    (out_r, g_r), (out_f, g_f) = run(False, True), run(True, True)
    assert rel_error(out_32, out_f) <= 2 * rel_error(out_32, out_r)
    err_r = {name: rel_error(g_32[name], g_r[name]) for name in g_32}
    err_f = {name: rel_error(g_32[name], g_f[name]) for name in g_32}
    print({name: (round(err_r[name], 4), round(err_f[name], 4)) for name in g_32})
    assert max(err_r.values()) <= 0.1 and max(err_f.values()) <= 0.1
    assert sum(err_f.values()) <= 1.5 * sum(err_r.values())


@pytest.mark.gpu
def test_fused_path_keeps_less_for_the_backward_on_gpu():
    """The activations held between forward and backward (memory allocated after the forward, less before),
    bf16 autocast: the fused path recomputes u and Δ and stores no conv output."""
    model = _gpu_model()
    ids = torch.randint(0, 1000, (2, 2048), device="cuda")
    held = {}
    for choice in (False, True):
        _set_fused(model, choice)
        held[choice] = _held_for_backward(model, ids)
    print(
        f"held for the backward: readable {held[False] / 2**20:.0f} MiB, fused {held[True] / 2**20:.0f} MiB"
    )
    assert held[True] < 0.8 * held[False]


@pytest.mark.gpu
def test_torch_compile_fullgraph_fused_on_gpu():
    model = _gpu_model()
    ids = torch.randint(0, 1000, (2, 512), device="cuda")
    want = _run(model, ids, None, lambda y: y.float().square().mean())
    compiled = torch.compile(model, fullgraph=True)
    got = _run(compiled, ids, None, lambda y: y.float().square().mean())
    assert rel_error(want[0], got[0]) <= 1e-4
    for name, g in got[1].items():
        assert rel_error(want[1][name.removeprefix("_orig_mod.")], g) <= 1e-3, name


def _set_recompute(model: torch.nn.Module, choice: bool) -> None:
    for m in model.modules():
        if isinstance(m, MambaMixer):
            m.recompute_scan_states = choice


def test_mixer_with_recomputed_scan_states_gives_the_same_gradients():
    """``recompute_scan_states``: the Triton scan (here in the interpreter) keeps no states for its backward
    and recomputes them; output and every gradient as with the states kept."""
    cfg = MambaConfig(**TINY)
    mixer = MambaMixer(cfg)
    mixer.scan_backend = "triton"
    hidden = torch.randn(2, 9, cfg.d_model)
    g = torch.randn(2, 9, cfg.d_model)
    runs = []
    for choice in (False, True):
        _set_recompute(mixer, choice)
        runs.append(_run(mixer, hidden, True, lambda y: (y * g).sum()))
    _compare(*runs[0], *runs[1], rtol=1e-6, atol=1e-6)


@pytest.mark.gpu
def test_recomputed_scan_states_hold_less_on_gpu():
    """With ``recompute_scan_states`` the memory held between forward and backward drops by the scan's saved
    states (batch · d_inner · L · N / 8 fp32 numbers per layer), and the gradients stay those of the kept
    states (bf16 autocast)."""
    model = _gpu_model()
    ids = torch.randint(0, 1000, (2, 2048), device="cuda")
    held, runs = {}, {}
    for choice in (False, True):
        _set_recompute(model, choice)
        _set_fused(model, True)
        held[choice] = _held_for_backward(model, ids)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            runs[choice] = _run(model, ids, True, lambda y: y.float().square().mean())
    _set_recompute(model, False)
    cfg = model.config
    states = cfg.n_layer * 2 * cfg.d_inner * 2048 * cfg.d_state // 8 * 4
    print(f"held: states kept {held[False] / 2**20:.0f} MiB, recomputed {held[True] / 2**20:.0f} MiB")
    assert held[False] - held[True] >= 0.95 * states
    (out_k, g_k), (out_r, g_r) = runs[False], runs[True]
    assert rel_error(out_k, out_r) <= 1e-6
    for name in g_k:
        assert rel_error(g_k[name], g_r[name]) <= 1e-3, name  # dB, dC: fp32 atomics add in any order
