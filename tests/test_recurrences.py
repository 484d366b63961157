"""minimamba.recurrences against independent references written here: a float64 double loop for linear
attention, the closed-form Jacobians of the S6 step and of the LSTM step (derived from the gate equations),
finite differences for gradients, and hand-counted chains for the critical path."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from minimamba.recurrences import (
    CriticalPath,
    critical_path,
    feature_map,
    linear_attention_parallel,
    linear_attention_recurrent,
    lstm_step_jacobian,
    s6_step,
    s6_step_jacobian,
)
from minimamba.testing import check_close

F64 = torch.float64


def _phi(x: float, kind: str) -> float:
    """φ of one number: elu(x) + 1 written out (x + 1 for x > 0, e^x otherwise), or x."""
    if kind == "identity":
        return x
    return x + 1.0 if x > 0 else math.exp(x)


def _reference(q, k, v, kind: str, normalize: bool):
    """y_t = Σ_{s<=t} (φ(q_t)·φ(k_s)) v_s [/ Σ_{s<=t} φ(q_t)·φ(k_s)], and S_L, z_L, by explicit float64 loops
    over the leading index, t, s and the feature index. q, k: (B, L, d_k), v: (B, L, d_v)."""
    Bn, L, dk = q.shape
    dv = v.shape[-1]
    y = torch.zeros(Bn, L, dv, dtype=F64)
    S = torch.zeros(Bn, dk, dv, dtype=F64)
    z = torch.zeros(Bn, dk, dtype=F64)
    for b in range(Bn):
        for t in range(L):
            num, den = [0.0] * dv, 0.0
            for s in range(t + 1):
                w = sum(_phi(q[b, t, i].item(), kind) * _phi(k[b, s, i].item(), kind) for i in range(dk))
                den += w
                for j in range(dv):
                    num[j] += w * v[b, s, j].item()
            for j in range(dv):
                y[b, t, j] = num[j] / den if normalize else num[j]
        for s in range(L):
            for i in range(dk):
                z[b, i] += _phi(k[b, s, i].item(), kind)
                for j in range(dv):
                    S[b, i, j] += _phi(k[b, s, i].item(), kind) * v[b, s, j].item()
    return y, S, z


def _qkv(batch, L, dk, dv, seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(batch, L, dk, generator=g, dtype=F64).to(dtype),
        torch.randn(batch, L, dk, generator=g, dtype=F64).to(dtype),
        torch.randn(batch, L, dv, generator=g, dtype=F64).to(dtype),
    )


# ---------------------------------------------------------------------------------------- linear attention


@pytest.mark.parametrize("L", [1, 7])
@pytest.mark.parametrize(("kind", "normalize"), [("elu+1", True), ("elu+1", False), ("identity", False)])
def test_linear_attention_recurrent_and_parallel_match_the_loop(L, kind, normalize):
    q, k, v = _qkv(2, L, 3, 5, seed=L)
    y_ref, S_ref, z_ref = _reference(q, k, v, kind, normalize)
    y_rec, (S, z) = linear_attention_recurrent(q, k, v, kind, normalize, return_state=True)
    y_par = linear_attention_parallel(q, k, v, kind, normalize)
    check_close("recurrent", y_ref, y_rec, rtol=1e-12, atol=1e-12)
    check_close("parallel", y_ref, y_par, rtol=1e-12, atol=1e-12)
    check_close("state S_L", S_ref, S, rtol=1e-12, atol=1e-12)
    check_close("normalizer z_L", z_ref, z, rtol=1e-12, atol=1e-12)
    assert y_rec.dtype == y_par.dtype == F64 and S.dtype == z.dtype == F64


def test_linear_attention_leading_dimensions_are_independent():
    """(batch, heads, L, d): each (batch, head) is its own sequence."""
    q, k, v = _qkv(6, 7, 3, 1, seed=3)
    shaped = [t.reshape(2, 3, 7, t.shape[-1]) for t in (q, k, v)]
    y_ref = _reference(q, k, v, "elu+1", True)[0].reshape(2, 3, 7, 1)
    check_close("(2, 3, L, d) recurrent", y_ref, linear_attention_recurrent(*shaped), rtol=1e-12, atol=1e-12)
    check_close("(2, 3, L, d) parallel", y_ref, linear_attention_parallel(*shaped), rtol=1e-12, atol=1e-12)


def test_linear_attention_gradients_by_finite_differences():
    q, k, v = (t.requires_grad_() for t in _qkv(1, 7, 2, 3, seed=4))
    for fn in (linear_attention_recurrent, linear_attention_parallel):
        assert torch.autograd.gradcheck(lambda a, b, c, fn=fn: fn(a, b, c), (q, k, v))
        assert torch.autograd.gradcheck(lambda a, b, c, fn=fn: fn(a, b, c, "identity", False), (q, k, v))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_linear_attention_state_is_fp32_for_lower_precision(dtype):
    q, k, v = _qkv(2, 7, 3, 4, seed=5, dtype=dtype)
    y, (S, z) = linear_attention_recurrent(q, k, v, return_state=True)
    assert y.dtype == dtype and S.dtype == z.dtype == torch.float32
    y_ref = _reference(q.double(), k.double(), v.double(), "elu+1", True)[0]
    tol = 1e-5 if dtype == torch.float32 else 2e-2  # bf16 rounds the output (2^-8 relative)
    check_close("recurrent", y_ref, y, rtol=tol, atol=tol)
    check_close("parallel", y_ref, linear_attention_parallel(q, k, v), rtol=tol, atol=tol)


def test_linear_attention_state_only_adds():
    """S_t - S_{t-1} = φ(k_t) v_t^T exactly: nothing multiplies the old state, an old key never decays."""
    q, k, v = _qkv(1, 7, 3, 2, seed=6)
    _, (S6, z6) = linear_attention_recurrent(q[:, :6], k[:, :6], v[:, :6], return_state=True)
    _, (S7, z7) = linear_attention_recurrent(q, k, v, return_state=True)
    fk = feature_map(k[0, 6])
    check_close("S_7 - S_6", torch.outer(fk, v[0, 6])[None], S7 - S6, rtol=1e-12, atol=1e-14)
    assert (z7 > z6).all()  # positive features: the normalizer grows in every entry


def test_feature_map():
    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 3.0], dtype=F64)
    check_close("elu+1", torch.tensor([_phi(a, "elu+1") for a in x.tolist()], dtype=F64), feature_map(x))
    assert torch.equal(feature_map(x, "identity"), x)
    assert (feature_map(torch.tensor([-80.0, -30.0, -1.0, 0.0, 1.0])) > 0).all()  # fp32: F.elu + 1 gives 0
    x.requires_grad_()
    assert torch.autograd.gradcheck(feature_map, (x,))


# ------------------------------------------------------------------------------------------- the S6 step


@pytest.mark.parametrize(("d_inner", "N"), [(3, 1), (3, 4)])
def test_s6_step_and_its_jacobian(d_inner, N):
    g = torch.Generator().manual_seed(d_inner * 10 + N)
    A = -torch.rand(d_inner, N, generator=g, dtype=F64) * 3
    delta = torch.rand(d_inner, generator=g, dtype=F64)
    u, B = torch.randn(d_inner, generator=g, dtype=F64), torch.randn(N, generator=g, dtype=F64)
    h1, h2 = torch.randn(2, d_inner, N, generator=g, dtype=F64)
    ref = torch.zeros(d_inner, N, dtype=F64)
    for d in range(d_inner):
        for n in range(N):
            ref[d, n] = math.exp(delta[d] * A[d, n]) * h1[d, n] + delta[d] * u[d] * B[n]
    check_close("s6_step", ref, s6_step(h1, u, delta, A, B), rtol=1e-14, atol=1e-14)
    closed = torch.diag(
        torch.tensor([math.exp(delta[d] * A[d, n]) for d in range(d_inner) for n in range(N)], dtype=F64)
    )
    J1, J2 = s6_step_jacobian(h1, u, delta, A, B), s6_step_jacobian(h2, u, delta, A, B)
    check_close("Jacobian = diag(exp(ΔA))", closed, J1, rtol=1e-14, atol=1e-15)
    assert torch.equal(J1, J2)  # the same at another state


# ------------------------------------------------------------------------------------------ the LSTM step


def _lstm_jacobian_closed_form(cell, x, h, c):
    """d(h', c')/d(h, c) from c' = f c + i g, h' = o tanh(c'), gates from W_ih x + b_ih + W_hh h + b_hh
    (PyTorch's order i, f, g, o), by the chain rule."""
    H = cell.hidden_size
    pre = cell.weight_ih @ x + cell.bias_ih + cell.weight_hh @ h + cell.bias_hh
    i, f, gg, o = (pre[j * H : (j + 1) * H] for j in range(4))
    i, f, gg, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(gg), torch.sigmoid(o)
    W_i, W_f, W_g, W_o = (cell.weight_hh[j * H : (j + 1) * H] for j in range(4))
    c_new = f * c + i * gg
    dc_dh = (
        (c * f * (1 - f))[:, None] * W_f
        + (gg * i * (1 - i))[:, None] * W_i
        + (i * (1 - gg**2))[:, None] * W_g
    )
    dc_dc = torch.diag(f)
    th = torch.tanh(c_new)
    dh_dh = (th * o * (1 - o))[:, None] * W_o + (o * (1 - th**2))[:, None] * dc_dh
    dh_dc = (o * (1 - th**2))[:, None] * dc_dc
    return torch.cat([torch.cat([dh_dh, dh_dc], 1), torch.cat([dc_dh, dc_dc], 1)], 0)


def _cell(I=2, H=3, seed=0):
    torch.manual_seed(seed)
    return nn.LSTMCell(I, H).double()


def test_lstm_jacobian_matches_the_chain_rule_and_depends_on_the_state():
    cell = _cell()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, generator=g, dtype=F64)
    states = [
        (torch.randn(3, generator=g, dtype=F64), torch.randn(3, generator=g, dtype=F64)) for _ in range(2)
    ]
    with torch.no_grad():
        refs = [_lstm_jacobian_closed_form(cell, x, h, c) for h, c in states]
    Js = [lstm_step_jacobian(cell, x, h, c) for h, c in states]
    for ref, J in zip(refs, Js):
        check_close("LSTM step Jacobian", ref, J, rtol=1e-12, atol=1e-14)
    assert Js[0].shape == (6, 6)
    assert (Js[0][:3, :3] - Js[1][:3, :3]).abs().max() > 1e-2  # ∂h_t/∂h_{t-1} differs between the states


def test_lstm_without_recurrent_gates_has_a_state_free_cell_update():
    """With W_hh = 0 the gates read x only: ∂c_t/∂c_{t-1} = diag(f_t) is the same at every state."""
    cell = _cell(seed=2)
    with torch.no_grad():
        cell.weight_hh.zero_()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, generator=g, dtype=F64)
    J1, J2 = (lstm_step_jacobian(cell, x, *torch.randn(2, 3, generator=g, dtype=F64)) for _ in range(2))
    check_close("∂c/∂c independent of the state", J1[3:, 3:], J2[3:, 3:], rtol=0, atol=1e-15)
    assert torch.count_nonzero(J1[3:, :3]) == 0  # and c no longer reads h


# ------------------------------------------------------------------------------------------ critical path


@pytest.mark.parametrize("L", [1, 7])
def test_critical_path_of_a_loop_is_its_length(L):
    a, b = torch.rand(L, 3), torch.randn(L, 3)

    def loop():
        h = torch.zeros(3)  # 1 operation
        for t in range(L):
            h = a[t] * h + b[t]  # select is a view (free); mul, add: 2 dependent operations
        return h

    assert critical_path(loop) == 1 + 2 * L


def test_critical_path_counts_dependence_not_work():
    x = torch.randn(5, 5)
    assert critical_path(lambda: [x + i for i in range(10)]) == 1  # ten independent operations
    assert critical_path(lambda: x.view(25).view(5, 5).t()) == 0  # views only
    assert critical_path(lambda: torch.tril(x @ x.t()) @ x) == 3  # matmul, tril, matmul: any L

    def in_place():
        y = x.clone()  # 1
        for _ in range(4):
            y.mul_(2.0)  # each one waits for the last
        y[0].add_(1.0)  # in place into a view: deepens y's storage
        return y

    with CriticalPath() as cp:
        in_place()
    assert cp.depth == 6 and cp.ops >= 6


def test_critical_path_of_a_doubling_scan_is_logarithmic():
    """Hillis-Steele on L = 2^m: m levels of (mul, add) on shifted slices."""
    for m in (1, 3, 5):
        a, b = torch.rand(2**m), torch.randn(2**m)

        def scan(a=a, b=b):
            k = 1
            while k < a.shape[0]:
                a, b = torch.cat([a[:k], a[k:] * a[:-k]]), torch.cat([b[:k], a[k:] * b[:-k] + b[k:]])
                k *= 2
            return b

        assert critical_path(scan) == 3 * m  # per level: mul, add, cat on the b path


# --------------------------------------------------------------------------------------------- bad inputs


def test_bad_inputs_raise_naming_the_argument():
    q, k, v = _qkv(1, 4, 3, 2)
    for fn in (linear_attention_recurrent, linear_attention_parallel):
        with pytest.raises(TypeError, match="q must be a torch.Tensor"):
            fn(q.tolist(), k, v)
        with pytest.raises(TypeError, match="k must be float16"):
            fn(q, k.long(), v)
        with pytest.raises(ValueError, match=r"q must have shape \(\.\.\., L, d_k\)"):
            fn(q[0, 0], k[0, 0], v[0, 0])
        with pytest.raises(ValueError, match="k must have the shape of q"):
            fn(q, k[:, :3], v)
        with pytest.raises(ValueError, match=r"v must have shape \(\.\.\., L, d_v\)"):
            fn(q, k, v[:, :3])
        with pytest.raises(ValueError, match="L >= 1"):
            fn(q[:, :0], k[:, :0], v[:, :0])
        with pytest.raises(ValueError, match="feature must be one of"):
            fn(q, k, v, feature="softmax")
        with pytest.raises(ValueError, match="normalize=True .* positive feature map"):
            fn(q, k, v, feature="identity")
        with pytest.raises(TypeError, match="normalize must be a bool"):
            fn(q, k, v, normalize=1)
    with pytest.raises(ValueError, match="kind must be one of"):
        feature_map(q, "relu")

    cell = _cell()
    x, h, c = torch.zeros(2, dtype=F64), torch.zeros(3, dtype=F64), torch.zeros(3, dtype=F64)
    with pytest.raises(TypeError, match="cell must be an nn.LSTMCell"):
        lstm_step_jacobian(nn.LSTM(2, 3), x, h, c)
    with pytest.raises(ValueError, match=r"h must have shape \(3,\)"):
        lstm_step_jacobian(cell, x, h[None], c)
    with pytest.raises(ValueError, match=r"x must have shape \(2,\)"):
        lstm_step_jacobian(cell, torch.zeros(3, dtype=F64), h, c)
    with pytest.raises(TypeError, match="c must have the cell's dtype"):
        lstm_step_jacobian(cell, x, h, c.float())

    A, u, delta, B, hs = -torch.ones(3, 2), torch.ones(3), torch.ones(3), torch.ones(2), torch.zeros(3, 2)
    with pytest.raises(ValueError, match=r"A must have shape \(d_inner, N\)"):
        s6_step(hs, u, delta, A[0], B)
    with pytest.raises(ValueError, match=r"h must have shape \(3, 2\)"):
        s6_step(hs.t(), u, delta, A, B)
    with pytest.raises(ValueError, match=r"delta must have shape \(3,\)"):
        s6_step_jacobian(hs, u, delta[:2], A, B)
    with pytest.raises(ValueError, match=r"B must have shape \(N,\)"):
        s6_step(hs, u, delta, A, torch.ones(3))
    with pytest.raises(TypeError, match="u must be a torch.Tensor"):
        s6_step(hs, [1.0, 1.0, 1.0], delta, A, B)
    with pytest.raises(TypeError, match="fn must be callable"):
        critical_path(3)


# ------------------------------------------------------------------------------- minimamba.viz.recurrences


def test_viz_step_jacobians():
    from minimamba.viz import recurrences as vr

    d = vr.step_jacobians(H=3, d_inner=3, N=2)
    (l1, l2), (s1, s2) = d["lstm"], d["s6"]
    assert l1.shape == (6, 6) and abs(l1 - l2).max() > 1e-2  # the LSTM's changes with the state
    assert (s1 == s2).all() and s1.shape == (6, 6)  # S6's does not
    off = s1 - torch.diag(torch.from_numpy(s1).diagonal()).numpy()
    assert abs(off).max() == 0 and ((s1.diagonal() > 0) & (s1.diagonal() < 1)).all()  # exp(ΔA) in (0, 1)


def test_viz_critical_paths_grow_as_the_algorithms_say():
    from minimamba.viz import recurrences as vr

    d = vr.critical_paths(lengths=(8, 16, 32), width=2, N=2)["depth"]
    seq = d["S6 scan, sequential"]
    assert seq[1] - seq[0] == 8 and seq[2] - seq[1] == 16  # one dependent step per position
    lstm = d["LSTM (nn.LSTM)"]
    assert lstm[2] - lstm[1] == 2 * (lstm[1] - lstm[0]) > 0  # linear in L
    ble = d["S6 scan, Blelloch"]
    assert ble[2] - ble[1] == ble[1] - ble[0] > 0  # a constant per doubling: logarithmic
    for name in ("linear attention, parallel", "softmax attention"):
        assert len(set(d[name])) == 1  # independent of L


def test_viz_forgetting_against_closed_forms():
    from minimamba.viz import recurrences as vr

    L, j, r, d_ = 40, 5, 30, 3
    out = vr.forgetting_update(log10_delta=-1.0, log10_delta_reset=0.5, reset_at=r, L=L, j=j, d=d_, seed=7)
    g = torch.Generator().manual_seed(7)
    k, v = torch.randn(2, L, d_, generator=g, dtype=F64)
    u, B = torch.randn(L, generator=g, dtype=F64), torch.randn(L, d_, generator=g, dtype=F64)
    phik = torch.tensor([_phi(x, "elu+1") for x in k[j].tolist()], dtype=F64)
    la = [0.0] * j + [(phik.norm() * v[j].norm()).item()] * (L - j)  # ‖a b^T‖_F = ‖a‖ ‖b‖
    check_close(
        "linear attention: token j's share",
        torch.tensor(la, dtype=F64),
        torch.from_numpy(out["la"]),
        rtol=1e-12,
    )
    s6 = []
    for t in range(L):
        if t < j:
            s6.append(0.0)
            continue
        share = [0.1 * u[j].item() * B[j, n].item() for n in range(d_)]  # Δ_j u_j B_j
        for s in range(j + 1, t + 1):
            dt = 10**0.5 if s == r else 0.1
            share = [share[n] * math.exp(-dt * (n + 1)) for n in range(d_)]
        s6.append(math.sqrt(sum(x * x for x in share)))
    check_close("S6: token j's share", torch.tensor(s6, dtype=F64), torch.from_numpy(out["s6"]), rtol=1e-10)
    with pytest.raises(ValueError, match="j must be an int in"):
        vr.forgetting_update(j=200)
    with pytest.raises(ValueError, match="reset_at must be an int in"):
        vr.forgetting_update(reset_at=-1)


def test_viz_recall():
    from minimamba.viz import recurrences as vr

    assert vr.recall_accuracy("softmax (KV cache)", 32) == 1.0
    for n in (3, 20):  # S6's state with A = 0 is the outer-product memory: the same read-out
        assert vr.recall_accuracy("S6 state", n, 16, 8) == vr.recall_accuracy(
            "linear attention, identity", n, 16, 8
        )
    # the outer-product read-out by hand: y = Σ_i (k_i · q) v_i, nearest stored value by cosine
    g = torch.Generator().manual_seed(1)
    K, V = torch.randn(50, 8, generator=g, dtype=F64), torch.randn(50, 5, generator=g, dtype=F64)
    hits = 0
    for i in range(50):
        y = sum((K[s] @ K[i]) * V[s] for s in range(50))
        cos = [(y @ V[s] / (y.norm() * V[s].norm())).item() for s in range(50)]
        hits += max(range(50), key=cos.__getitem__) == i
    assert vr.recall_accuracy("linear attention, identity", 50, 8, 5, seed=1) == hits / 50
    with pytest.raises(ValueError, match="memory must be one of"):
        vr.recall_accuracy("lstm", 4)
    with pytest.raises(ValueError, match="n_pairs must be an int >= 1"):
        vr.recall_accuracy("S6 state", 0)


def test_viz_state_sizes_match_closed_forms():
    from minimamba.lstm import lstm_param_count
    from minimamba.transformer import matched_pairs
    from minimamba.viz import recurrences as vr

    rows = {
        r["model"].split(",")[0] + ("+la" if "linear" in r["model"] else ""): r for r in vr.state_sizes(64)
    }
    pair = matched_pairs()[0]
    m, t = pair.mamba, pair.transformer
    assert rows["mamba-130m"]["fixed"] == m.n_layer * m.d_inner * (m.d_conv + m.d_state)
    lstm = vr.matched_lstm(rows["mamba-130m"]["params"], 50277, 3)
    assert rows["LSTM"]["fixed"] == 2 * 3 * lstm.d_model
    widths = range(8, 8000, 8)
    gaps = [
        abs(
            lstm_param_count(type(lstm)(vocab_size=50277, d_model=w, n_layer=3))
            - rows["mamba-130m"]["params"]
        )
        for w in widths
    ]
    assert lstm.d_model == widths[gaps.index(min(gaps))]  # the closest width, by brute force
    assert rows["transformer++-125m+la"]["fixed"] == t.n_layer * (t.n_head * t.head_dim**2 + t.d_model)
    assert rows["transformer++-125m"]["per_token"] == 2 * t.n_layer * t.d_model
    assert rows["transformer++-125m"]["at_context"] == 64 * 2 * t.n_layer * t.d_model


def test_viz_figures_have_labelled_axes():
    import matplotlib.pyplot as plt

    from minimamba.viz import recurrences as vr

    figs = [
        vr.plot_step_jacobians(),
        vr.plot_critical_paths(vr.critical_paths(lengths=(4, 8), width=2, N=2)),
        vr.plot_timings(vr.time_forward(lengths=(8, 16), batch=1, width=4, N=2, repeats=1)),
        vr.plot_forgetting(),
        vr.plot_recall(vr.recall_curves(ns=(2, 4), seeds=(0,))),
    ]
    for fig in figs:
        for ax in fig.axes:
            if ax.get_label() == "<colorbar>":
                continue
            assert ax.get_xlabel() and ax.get_ylabel(), ax.get_title()
        plt.close(fig)
    assert vr.forgetting_widget().children  # sliders and an output area
