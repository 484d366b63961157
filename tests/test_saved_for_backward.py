"""``minimamba.memory.saved_for_backward`` against counts derived here: toy functions whose saved tensors are
known from the derivative rules, then one MambaMixer, readable and fused, where the tensors named from the
code give lower bounds. The mixer runs the Triton scan (Triton's interpreter on CPU), as on a GPU, so that the
scan's saved u and Δ are the ones the fused path recomputes; tiny shape."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from minimamba.block import MambaMixer
from minimamba.config import MambaConfig
from minimamba.fused import recomputed
from minimamba.memory import big_copies, saved_for_backward

F32 = 4  # bytes per fp32 element


def test_toy_function_saves_what_the_derivative_rules_need():
    """y = sin(x * w): mul saves x and w (each is the other's gradient factor), sin saves its input x * w."""
    x, w = torch.randn(3, 5, requires_grad=True), torch.randn(5, requires_grad=True)
    every = saved_for_backward(lambda a, b: (a * b).sin(), x, w, exclude_inputs=False)
    assert every.total_bytes == (15 + 5 + 15) * F32
    assert sorted(s.shape for s in every.saved) == [(3, 5), (3, 5), (5,)]
    only_activations = saved_for_backward(lambda a, b: (a * b).sin(), x, w)
    assert [(s.shape, s.nbytes, s.made_by) for s in only_activations.saved] == [
        ((3, 5), 15 * F32, "MulBackward0")
    ]


def test_views_of_one_storage_count_once_and_parameters_not_at_all():
    """x[:, :2] and x[:, 2:] are saved by a mul: one storage, all of x. A Linear's weight (saved transposed,
    a view) is a parameter; its output (saved by tanh) is an activation."""
    x = torch.randn(4, 6, requires_grad=True)
    r = saved_for_backward(lambda a: a[:, :3] * a[:, 3:], x, exclude_inputs=False)
    assert r.total_bytes == x.numel() * F32 and r.saved[0].uses == 2
    lin = nn.Linear(6, 7)
    r = saved_for_backward(lambda a: torch.tanh(lin(a)), x)
    assert [(s.shape, s.nbytes) for s in r.saved] == [((4, 7), 4 * 7 * F32)]
    r = saved_for_backward(lin, x, exclude_inputs=False)  # the module's own parameters are skipped
    assert [(s.shape, s.nbytes) for s in r.saved] == [((4, 6), x.numel() * F32)]


def test_tensors_saved_inside_recomputed_are_counted_and_the_recomputed_one_is_not():
    """``recomputed`` runs its own saved-tensor hooks; the count must still see what it stores."""
    a = torch.randn(5, requires_grad=True)

    def f(a):
        u, v = a * 2, a * 3
        with recomputed(u, lambda: a.detach() * 2):
            return (u * u).sum() + (v * v).sum()  # u recomputed, v stored

    r = saved_for_backward(f, a)
    assert [(s.shape, s.nbytes, s.uses) for s in r.saved] == [((5,), 5 * F32, 2)]


def _mixer():
    torch.manual_seed(0)
    cfg = MambaConfig(d_model=16, n_layer=1, vocab_size=19, d_state=4)
    return MambaMixer(cfg), torch.randn(2, 24, cfg.d_model)


@pytest.fixture(scope="module")
def counts():
    """Readable and fused: what a forward of one mixer keeps, with the Triton scan."""
    mixer, hidden = _mixer()
    mixer.scan_backend = "triton"  # as on a GPU (here through Triton's interpreter)
    out = {}
    for fused in (False, True):
        mixer.fused_forward = fused
        out[fused] = saved_for_backward(mixer, hidden)
    return mixer, hidden, out


def test_readable_mixer_keeps_at_least_the_tensors_named_in_its_code(counts):
    mixer, hidden, out = counts
    (batch, L, _), d, K = hidden.shape, mixer.d_inner, mixer.d_conv
    act = batch * d * L * F32  # one (batch, d_inner, L) fp32 tensor
    named = {
        "in_proj output xz (x for the conv, z for the gate)": 2 * act,
        "conv output with its padding (SiLU's input)": batch * d * (L + K - 1) * F32,
        "u = SiLU(conv) (the scan's input)": act,
        "u transposed and copied for x_proj": act,
        "Δ (the scan's input)": act,
        "y transposed and copied for out_proj": act,
    }
    assert out[False].total_bytes >= sum(named.values())


def test_fused_mixer_keeps_less_by_at_least_what_it_recomputes(counts):
    mixer, hidden, out = counts
    (batch, L, _), d, K = hidden.shape, mixer.d_inner, mixer.d_conv
    act = batch * d * L * F32
    recomputed_bytes = batch * d * (L + K - 1) * F32 + 3 * act  # padded conv output, u, u's copy, Δ
    assert out[True].total_bytes <= out[False].total_bytes - recomputed_bytes
    assert out[True].total_bytes > 0


def test_counting_does_not_change_the_output(counts):
    mixer, hidden, out = counts
    for fused in (False, True):
        mixer.fused_forward = fused
        assert torch.equal(mixer(hidden), out[fused].output)


def test_bad_input():
    x = torch.randn(3, requires_grad=True)
    with pytest.raises(TypeError, match="fn must be callable"):
        saved_for_backward(x, x)
    with pytest.raises(TypeError, match="exclude must be an iterable of tensors"):
        saved_for_backward(torch.sin, x, exclude=x)
    with pytest.raises(TypeError, match="exclude must hold tensors, got int at position 1"):
        saved_for_backward(torch.sin, x, exclude=[x, 3])
    with pytest.raises(TypeError, match="exclude_inputs must be a bool"):
        saved_for_backward(torch.sin, x, exclude_inputs="yes")


def test_big_copies_lists_large_layout_copies_only():
    """A transposed view made contiguous and a cast are copies; a view, and copies below the size, are not."""
    x = torch.randn(4, 6, 5)

    def work():
        x.transpose(1, 2).contiguous()  # 120 elements: counted
        x.float().double()  # a cast: counted
        x.view(24, 5)  # a view: nothing copied
        x[:1].clone()  # 30 elements: below the size
        torch.randn(200).clone()  # one dimension: not counted

    got = big_copies(work, numel=100)
    assert [shape for _, shape in got] == [(4, 5, 6), (4, 6, 5)]
    assert got[0][0].startswith("clone") and got[1][0].startswith("_to_copy")
    with pytest.raises(ValueError, match="numel must be"):
        big_copies(work, 0)
    with pytest.raises(TypeError, match="fn must be callable"):
        big_copies(None, 10)
