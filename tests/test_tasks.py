"""The synthetic-task generators and the masked loss / accuracy, against loops written here."""

import math

import pytest
import torch

from minimamba.tasks import (
    IGNORE_INDEX,
    NOISE,
    Accuracy,
    TaskBatch,
    induction_heads,
    marker_token,
    masked_accuracy,
    masked_loss,
    masked_loss_dense,
    render,
    selective_copying,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------- selective copying


@pytest.mark.parametrize(
    ("batch", "L", "k", "vocab"), [(1, 2, 1, 3), (5, 7, 3, 16), (3, 64, 16, 16), (2, 40, 39, 5)]
)
def test_selective_copying_structure(batch, L, k, vocab):
    b = selective_copying(batch, L, k, vocab, generator=gen(1))
    assert isinstance(b, TaskBatch)
    inputs, targets, mask = b
    assert inputs.shape == targets.shape == mask.shape == (batch, L + k)
    assert inputs.dtype == targets.dtype == torch.long and mask.dtype == torch.bool
    marker = marker_token(vocab)
    for r in range(batch):
        row = inputs[r].tolist()
        # the noisy part: exactly k data tokens (neither noise nor marker), read left to right
        data = [t for t in row[:L] if t != NOISE]
        assert len(data) == k
        assert all(1 <= t <= vocab - 2 for t in data)
        assert row[L:] == [marker] * k
        assert targets[r, L:].tolist() == data
        assert targets[r, :L].tolist() == [IGNORE_INDEX] * L
        assert mask[r].tolist() == [False] * L + [True] * k


def test_selective_copying_is_seeded_and_varies():
    a = selective_copying(4, 50, 8, generator=gen(3))
    b = selective_copying(4, 50, 8, generator=gen(3))
    c = selective_copying(4, 50, 8, generator=gen(4))
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert not torch.equal(a.inputs, c.inputs)


def test_selective_copying_positions_and_tokens_are_uniform():
    # every position of the noisy part is a data position with probability k / L, every data token has
    # probability 1 / (vocab - 2); 4000 rows, 5-sigma bands
    n, L, k, vocab = 4000, 20, 5, 8
    inputs, _, _ = selective_copying(n, L, k, vocab, generator=gen(5))
    is_data = (inputs[:, :L] != NOISE).double().mean(dim=0)
    p = k / L
    assert (is_data - p).abs().max() < 5 * math.sqrt(p * (1 - p) / n)
    counts = torch.bincount(inputs[:, :L][inputs[:, :L] != NOISE], minlength=vocab).double()
    freq = counts[1 : vocab - 1] / counts.sum()
    q = 1 / (vocab - 2)
    assert (freq - q).abs().max() < 5 * math.sqrt(q * (1 - q) / counts.sum())


def test_selective_copying_device_argument():
    b = selective_copying(2, 10, 3, generator=gen(), device="cpu")
    assert b.inputs.device.type == "cpu"
    assert b.to("cpu").mask.dtype == torch.bool


@pytest.mark.parametrize(
    ("kwargs", "err", "msg"),
    [
        ({"batch": 0, "L": 10}, ValueError, "batch must be >= 1, got 0"),
        ({"batch": 2.0, "L": 10}, TypeError, "batch must be an int, got float"),
        ({"batch": 2, "L": 10, "k": 10}, ValueError, "k must be < L"),
        ({"batch": 2, "L": 10, "k": 0}, ValueError, "k must be >= 1, got 0"),
        ({"batch": 2, "L": 10, "vocab": 2}, ValueError, "vocab must be >= 3, got 2"),
        ({"batch": 2, "L": True}, TypeError, "L must be an int, got bool"),
        ({"batch": 2, "L": 10, "k": 3, "generator": 7}, TypeError, "generator must be a torch.Generator"),
    ],
)
def test_selective_copying_rejects_bad_arguments(kwargs, err, msg):
    with pytest.raises(err, match=msg):
        selective_copying(**kwargs)


# ------------------------------------------------------------------------------------------------ induction heads


@pytest.mark.parametrize(("batch", "L", "vocab"), [(1, 3, 3), (6, 7, 16), (4, 256, 16), (2, 4097, 5)])
def test_induction_heads_structure(batch, L, vocab):
    inputs, targets, mask = induction_heads(batch, L, vocab, generator=gen(2))
    assert inputs.shape == targets.shape == mask.shape == (batch, L)
    special = marker_token(vocab)
    for r in range(batch):
        row = inputs[r].tolist()
        where = [i for i, t in enumerate(row) if t == special]
        assert len(where) == 2 and where[1] == L - 1  # once inside, once at the end
        assert where[0] <= L - 3
        assert all(0 <= t <= vocab - 2 for i, t in enumerate(row) if i not in where)
        assert targets[r].tolist() == [IGNORE_INDEX] * (L - 1) + [row[where[0] + 1]]
        assert mask[r].tolist() == [False] * (L - 1) + [True]


def test_induction_heads_is_seeded_and_prefix_position_is_uniform():
    a = induction_heads(3, 30, generator=gen(9))
    b = induction_heads(3, 30, generator=gen(9))
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    n, L, vocab = 6000, 8, 16
    inputs, targets, _ = induction_heads(n, L, vocab, generator=gen(10))
    first = (inputs[:, : L - 1] == marker_token(vocab)).double().argmax(dim=1)
    freq = torch.bincount(first.long(), minlength=L - 2).double() / n  # positions 0 … L-3
    p = 1 / (L - 2)
    assert (freq - p).abs().max() < 5 * math.sqrt(p * (1 - p) / n)
    answer = torch.bincount(targets[:, -1], minlength=vocab - 1).double() / n
    q = 1 / (vocab - 1)
    assert (answer - q).abs().max() < 5 * math.sqrt(q * (1 - q) / n)


@pytest.mark.parametrize(
    ("kwargs", "err", "msg"),
    [
        ({"batch": 2, "L": 2}, ValueError, "L must be >= 3, got 2"),
        ({"batch": 2, "L": 10, "vocab": 1}, ValueError, "vocab must be >= 3, got 1"),
        ({"batch": "2", "L": 10}, TypeError, "batch must be an int, got str"),
    ],
)
def test_induction_heads_rejects_bad_arguments(kwargs, err, msg):
    with pytest.raises(err, match=msg):
        induction_heads(**kwargs)


# ----------------------------------------------------------------------------------------- masked loss / accuracy


def loop_loss(logits, targets, mask):
    """Mean over masked positions of -log softmax(logits)[target], in float64 with explicit loops."""
    total, n = 0.0, 0
    for b in range(logits.shape[0]):
        for t in range(logits.shape[1]):
            if mask[b, t]:
                row = [float(v) for v in logits[b, t]]
                m = max(row)
                lse = m + math.log(sum(math.exp(v - m) for v in row))
                total += lse - row[int(targets[b, t])]
                n += 1
    return total / n


def loop_accuracy(logits, targets, mask):
    right = total = seq_right = seqs = 0
    for b in range(logits.shape[0]):
        ok_row, any_row = True, False
        for t in range(logits.shape[1]):
            if mask[b, t]:
                row = logits[b, t].tolist()
                ok = row.index(max(row)) == int(targets[b, t])
                right += ok
                total += 1
                ok_row &= ok
                any_row = True
        if any_row:
            seqs += 1
            seq_right += ok_row
    return right / total, seq_right / seqs


@pytest.mark.parametrize("task", ["copy", "induction"])
def test_masked_loss_and_accuracy_match_loops(task):
    g = gen(11)
    b = (
        selective_copying(5, 12, 4, 8, generator=g)
        if task == "copy"
        else induction_heads(7, 9, 8, generator=g)
    )
    V = 16  # a padded vocabulary, larger than the task's
    logits = torch.randn(*b.inputs.shape, V, generator=g, dtype=torch.float64)
    # make some answers right so that both accuracies are strictly between 0 and 1 (for the copy task)
    rows, cols = torch.nonzero(b.mask, as_tuple=True)
    logits[rows[::2], cols[::2], b.targets[rows[::2], cols[::2]]] += 10.0
    loss = masked_loss(logits, b.targets, b.mask)
    assert loss.dtype == torch.float64
    assert masked_loss(logits.bfloat16(), b.targets, b.mask).dtype == torch.float32
    assert loss.item() == pytest.approx(loop_loss(logits, b.targets, b.mask), rel=1e-6)
    acc = masked_accuracy(logits, b.targets, b.mask)
    assert isinstance(acc, Accuracy)
    tok, seq = loop_accuracy(logits, b.targets, b.mask)
    assert acc.token == pytest.approx(tok) and acc.sequence == pytest.approx(seq)
    assert 0 < acc.token < 1


def test_masked_loss_is_differentiable_and_ignores_unmasked_positions():
    b = selective_copying(3, 10, 2, 6, generator=gen(12))
    logits = torch.randn(*b.inputs.shape, 6, requires_grad=True)
    masked_loss(logits, b.targets, b.mask).backward()
    assert logits.grad[~b.mask].abs().max() == 0
    assert logits.grad[b.mask].abs().max() > 0


def test_perfect_logits_score_one():
    b = induction_heads(4, 10, generator=gen(13))
    logits = torch.nn.functional.one_hot(b.targets.clamp_min(0), 16).float() * 50
    assert masked_accuracy(logits, b.targets, b.mask) == Accuracy(1.0, 1.0)
    assert masked_loss(logits, b.targets, b.mask).item() < 1e-6


def test_scoring_rejects_bad_arguments():
    b = selective_copying(2, 6, 2, 5, generator=gen())
    logits = torch.zeros(2, 8, 5)
    with pytest.raises(ValueError, match=r"logits must be a \(batch, T, vocab\) tensor, got \(2, 8\)"):
        masked_loss(torch.zeros(2, 8), b.targets, b.mask)
    with pytest.raises(ValueError, match=r"targets must have shape \(batch, T\) = \(2, 8\)"):
        masked_accuracy(logits, b.targets[:, :3], b.mask)
    with pytest.raises(TypeError, match="mask must be a bool tensor"):
        masked_loss(logits, b.targets, b.mask.long())
    with pytest.raises(ValueError, match="mask selects no position"):
        masked_loss(logits, b.targets, torch.zeros_like(b.mask))


def test_render():
    b = selective_copying(1, 6, 2, 16, generator=gen(14))
    s = render(b.inputs[0], "selective_copying")
    assert len(s) == 8 and s.endswith("▶▶") and s.count("·") == 4
    h = render(induction_heads(1, 5, generator=gen(15)).inputs[0], "induction_heads")
    assert len(h) == 5 and h.count("▶") == 2 and h[-1] == "▶"
    with pytest.raises(ValueError, match="task must be"):
        render(b.inputs[0], "copy")
    with pytest.raises(ValueError, match=r"inputs must be one sequence of shape \(T,\), got \(1, 8\)"):
        render(b.inputs, "selective_copying")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_masked_loss_dense_equals_masked_loss(dtype):
    """The CUDA-graph-capturable loss against the one with boolean indexing: value and gradient."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 11, 19, generator=g).to(dtype)
    targets = torch.randint(0, 16, (3, 11), generator=g)
    mask = torch.rand(3, 11, generator=g) < 0.4
    mask[0, 0] = True
    targets[~mask] = -100  # what the tasks put outside the answers: never read by the dense loss
    results = []
    for fn in (masked_loss, masked_loss_dense):
        leaf = logits.clone().requires_grad_()
        loss = fn(leaf, targets, mask)
        results.append((loss.detach().float(), torch.autograd.grad(loss, leaf)[0].float()))
    (a, ga), (b, gb) = results
    tol = 1e-6 if dtype == torch.float32 else 1e-2
    assert torch.allclose(a, b, rtol=tol, atol=tol) and torch.allclose(ga, gb, rtol=tol, atol=tol)


def test_masked_loss_dense_rejects_bad_arguments():
    logits, targets = torch.zeros(2, 5, 7), torch.zeros(2, 5, dtype=torch.long)
    with pytest.raises(ValueError, match="logits must be"):
        masked_loss_dense(torch.zeros(2, 5), targets, torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask must have shape \\(batch, T\\)"):
        masked_loss_dense(logits, targets, torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="mask must be a bool"):
        masked_loss_dense(logits, targets, torch.ones(2, 5))
