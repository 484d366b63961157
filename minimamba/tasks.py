"""The paper's two synthetic tasks (Mamba §3.1, §4.1, App. E.1) as seeded batch generators, and the masked
loss and accuracy that score a model only where it has to answer.

Both tasks test *content-aware* reasoning: which tokens to keep depends on what they are, not where they are.

- **Selective copying** (§4.1.1, Fig. 2): ``k`` data tokens sit at random positions in a run of ``L`` noise
  tokens; then ``k`` marker tokens ask the model to output the data tokens in order. The spacing changes from
  one sequence to the next, so a fixed (LTI) convolution kernel cannot line them up (Table 1).
- **Induction heads** (§4.1.2, Table 2): a special token is followed by a target token somewhere in a random
  sequence; the sequence ends with the special token again and the model must recall the target.

Token layout, for a vocabulary of ``vocab`` tokens (the paper uses 16):

    selective_copying: 0 = noise, 1 … vocab-2 = data, vocab-1 = marker
    induction_heads:   0 … vocab-2 = ordinary tokens, vocab-1 = the special (copy-prefix) token

Every generator returns a :class:`TaskBatch` ``(inputs, targets, mask)`` of shape ``(batch, T)``: the model
reads ``inputs`` and its output at position ``t`` is scored against ``targets[:, t]`` where ``mask`` is True
(``targets`` holds :data:`IGNORE_INDEX` elsewhere). Data is regenerated every step from a
``torch.Generator``, so a seed fixes the whole stream.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

__all__ = [
    "IGNORE_INDEX",
    "NOISE",
    "Accuracy",
    "TaskBatch",
    "induction_heads",
    "marker_token",
    "masked_accuracy",
    "masked_loss",
    "masked_loss_dense",
    "render",
    "selective_copying",
]

#: ``targets`` outside the answer positions (the value ``F.cross_entropy`` ignores by default).
IGNORE_INDEX = -100
#: The noise token of selective copying (the white squares of the paper's Fig. 2).
NOISE = 0


def marker_token(vocab: int) -> int:
    """The last token of the vocabulary: the marker of selective copying, the special token of induction heads."""
    return vocab - 1


class TaskBatch(NamedTuple):
    """One batch of a synthetic task; unpacks as ``inputs, targets, mask = batch``.

    inputs:  (batch, T) int64 tokens the model reads
    targets: (batch, T) int64 answer tokens, IGNORE_INDEX where there is nothing to answer
    mask:    (batch, T) bool, True at the answer positions
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor

    def to(self, device: torch.device | str) -> TaskBatch:
        """The same batch on ``device``."""
        return TaskBatch(*(t.to(device) for t in self))


class Accuracy(NamedTuple):
    """token: fraction of answer tokens right; sequence: fraction of sequences with every answer right."""

    token: float
    sequence: float


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _check_generator(generator) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")


def selective_copying(
    batch: int,
    L: int,
    k: int = 16,
    vocab: int = 16,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> TaskBatch:
    """Selective copying (§4.1.1): remember ``k`` data tokens scattered among ``L`` noise tokens.

    Each sequence is ``L`` noise tokens in which ``k`` positions (distinct, sorted, drawn uniformly) hold data
    tokens drawn uniformly from ``1 … vocab-2``, followed by ``k`` marker tokens (``vocab-1``). At the ``i``-th
    marker the model must output the ``i``-th data token, so the answer needs the content of the sequence, not
    only positions. The paper uses sequences of length 4096, k = 16, vocab = 16 (App. E.1).

    Args:
        batch: number of sequences. L: length of the noisy part (>= k + 1). k: data tokens per sequence.
        vocab: vocabulary size including the noise and marker tokens (>= 3).
        generator: a CPU ``torch.Generator`` (its seed fixes the batch); None uses torch's global one.
        device: where to put the result (generated on the CPU, then moved).
    Returns:
        TaskBatch of shape (batch, L + k); mask is True on the last k positions.
    """
    _check_int("batch", batch, 1)
    _check_int("L", L, 2)
    _check_int("k", k, 1)
    _check_int("vocab", vocab, 3)
    if k >= L:
        raise ValueError(
            f"k must be < L (k data tokens among L positions, at least one noise), got k={k}, L={L}"
        )
    _check_generator(generator)
    # k distinct positions out of L, sorted: the first k of a random permutation per row
    pos = torch.rand(batch, L, generator=generator).argsort(dim=1)[:, :k].sort(dim=1).values  # (batch, k)
    data = torch.randint(1, vocab - 1, (batch, k), generator=generator)  # (batch, k) in 1 … vocab-2
    inputs = torch.full((batch, L + k), NOISE, dtype=torch.long)
    inputs.scatter_(1, pos, data)
    inputs[:, L:] = marker_token(vocab)
    targets = torch.full_like(inputs, IGNORE_INDEX)
    targets[:, L:] = data
    mask = targets != IGNORE_INDEX
    out = TaskBatch(inputs, targets, mask)
    return out.to(device) if device is not None else out


def induction_heads(
    batch: int,
    L: int,
    vocab: int = 16,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> TaskBatch:
    """Induction heads (§4.1.2): after ``special, target`` somewhere, the final ``special`` asks for ``target``.

    Each sequence has ``L`` tokens: ordinary tokens drawn uniformly from ``0 … vocab-2``, the special token
    (``vocab-1``) once at a uniform position ``p`` in ``0 … L-3`` followed by the target at ``p + 1``, and the
    special token again at ``L - 1``. Only the last position is scored: its output must be the target.
    The paper trains at L = 256 with vocab = 16 and tests up to L = 2^20.

    Args:
        batch: number of sequences. L: sequence length (>= 3). vocab: vocabulary size including the special
        token (>= 3). generator: a CPU ``torch.Generator`` or None. device: where to put the result.
    Returns:
        TaskBatch of shape (batch, L); mask is True on the last position only.
    """
    _check_int("batch", batch, 1)
    _check_int("L", L, 3)
    _check_int("vocab", vocab, 3)
    _check_generator(generator)
    special = marker_token(vocab)
    inputs = torch.randint(0, vocab - 1, (batch, L), generator=generator)  # ordinary tokens only
    p = torch.randint(0, L - 2, (batch, 1), generator=generator)  # (batch, 1): where the special token sits
    inputs.scatter_(1, p, special)
    target = inputs.gather(1, p + 1)  # (batch, 1): the ordinary token right after it
    inputs[:, L - 1] = special
    targets = torch.full_like(inputs, IGNORE_INDEX)
    targets[:, L - 1 :] = target
    mask = targets != IGNORE_INDEX
    out = TaskBatch(inputs, targets, mask)
    return out.to(device) if device is not None else out


def _check_scored(logits, targets, mask, nonempty: bool = True) -> None:
    """Shapes and dtypes; with ``nonempty``, also that the mask selects something (which reads the mask's
    values: on a GPU, a wait for it)."""
    if not isinstance(logits, torch.Tensor) or logits.dim() != 3:
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"logits must be a (batch, T, vocab) tensor, got {got}")
    for name, t in (("targets", targets), ("mask", mask)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if tuple(t.shape) != tuple(logits.shape[:2]):
            raise ValueError(
                f"{name} must have shape (batch, T) = {tuple(logits.shape[:2])} like logits, got {tuple(t.shape)}"
            )
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor, got {mask.dtype}")
    if nonempty and not bool(mask.any()):
        raise ValueError("mask selects no position: there is nothing to score")


def masked_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the answer positions only.

    Args:
        logits: (batch, T, V) with V >= the task's vocabulary (a padded vocabulary is fine).
        targets: (batch, T) int64. mask: (batch, T) bool, True where the loss counts.
    Returns:
        a scalar tensor (differentiable), computed in fp32 for 16-bit logits, else in the logits' dtype.
    """
    _check_scored(logits, targets, mask)
    scored = logits[mask]  # (n_answers, V)
    if scored.dtype in (torch.float16, torch.bfloat16):
        scored = scored.float()
    return F.cross_entropy(scored, targets[mask])


def masked_loss_dense(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """:func:`masked_loss` without boolean indexing: the cross-entropy at every position, weighted by the
    mask and divided by the number of answers. The same value (up to the order of the sums), and no
    operation whose output size depends on the data, so no wait for the GPU: a CUDA graph can capture it
    (:class:`minimamba.train.GraphedStep`). Its arguments are checked by shape and dtype only; a mask that
    selects nothing gives NaN instead of an error (checking it would be such a wait)."""
    _check_scored(logits, targets, mask, nonempty=False)
    x = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    safe = torch.where(mask, targets, torch.zeros_like(targets))  # any valid class where the mask is off
    ce = F.cross_entropy(x.flatten(0, 1), safe.flatten(), reduction="none")  # (batch · T,)
    m = mask.flatten().to(ce.dtype)
    return (ce * m).sum() / m.sum()


@torch.no_grad()
def masked_accuracy(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> Accuracy:
    """Greedy accuracy on the answer positions: per token, and per sequence (all answers of a row right).

    Args:
        logits: (batch, T, V). targets: (batch, T) int64. mask: (batch, T) bool.
    Returns:
        Accuracy(token, sequence) as Python floats in [0, 1]; rows without any answer position are skipped
        in the per-sequence score.
    """
    _check_scored(logits, targets, mask)
    right = (logits.argmax(dim=-1) == targets) & mask  # (batch, T)
    token = right.sum().item() / mask.sum().item()
    rows = mask.any(dim=1)  # (batch,)
    seq_right = (right.sum(dim=1) == mask.sum(dim=1)) & rows
    return Accuracy(token, seq_right.sum().item() / rows.sum().item())


def render(inputs: torch.Tensor, task: str, vocab: int = 16) -> str:
    """One sequence as text: ``·`` noise, ``▶`` marker / special token, other tokens as their number.

    Args:
        inputs: (T,) int64, one row of a TaskBatch's inputs. task: "selective_copying" or "induction_heads".
    """
    if task not in ("selective_copying", "induction_heads"):
        raise ValueError(f"task must be 'selective_copying' or 'induction_heads', got {task!r}")
    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 1:
        got = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
        raise ValueError(f"inputs must be one sequence of shape (T,), got {got}")
    special = marker_token(vocab)

    def sym(t: int) -> str:
        if t == special:
            return "▶"
        if task == "selective_copying" and t == NOISE:
            return "·"
        return format(t, "x")  # one character per token for vocab <= 16

    return "".join(sym(int(t)) for t in inputs)
