"""Corpus lookup, vocabulary, splits and batching for character data."""
from __future__ import annotations

import hashlib
import io
import json
import time

import numpy as np
import pytest

from rnnlab.data import text
from rnnlab.data import tfds_source


# --- corpus lookup -----------------------------------------------------------

@pytest.fixture
def isolated(monkeypatch, tmp_path):
  """No env var, an empty cache, and no network unless a test allows it."""
  monkeypatch.delenv("RNNLAB_DATA_DIR", raising=False)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
  monkeypatch.setenv("RNNLAB_OFFLINE", "1")
  return tmp_path


def _write(path, content="hello"):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(content)
  return path


def test_lookup_order_path_then_env_then_cache(isolated, monkeypatch):
  cached = _write(isolated / "cache" / "rnnlab" / "tinyshakespeare" /
                  "input.txt")
  monkeypatch.setitem(text.CORPORA, "tinyshakespeare", text.Corpus(  # "hello"
      url="https://example.invalid/input.txt",
      sha256=hashlib.sha256(b"hello").hexdigest()))
  assert text.resolve_corpus("tinyshakespeare") == cached
  env_file = _write(isolated / "data" / "tinyshakespeare" / "input.txt")
  monkeypatch.setenv("RNNLAB_DATA_DIR", str(isolated / "data"))
  assert text.resolve_corpus("tinyshakespeare") == env_file
  explicit = _write(isolated / "mine.txt")
  assert text.resolve_corpus("tinyshakespeare", str(explicit)) == explicit


def test_offline_missing_corpus_fails_fast_with_how_to(isolated, monkeypatch):
  def no_network(*args, **kwargs):
    raise AssertionError("the network must not be touched offline")
  monkeypatch.setattr(text.urllib.request, "urlopen", no_network)
  start = time.perf_counter()
  with pytest.raises(text.DataError) as e:
    text.resolve_corpus("tinyshakespeare")
  assert time.perf_counter() - start < 1.0
  message = str(e.value)
  assert "--config.text.path" in message and "RNNLAB_DATA_DIR" in message
  assert text.CORPORA["tinyshakespeare"].url in message
  assert "RNNLAB_OFFLINE" in message


def test_explicit_path_that_is_missing(isolated):
  with pytest.raises(text.DataError, match="nope.txt.*not a file"):
    text.resolve_corpus("tinyshakespeare", str(isolated / "nope.txt"))


class _FakeResponse(io.BytesIO):
  def __enter__(self):
    return self

  def __exit__(self, *args):
    return False


def test_download_goes_to_cache_with_timeout_and_checksum(isolated,
                                                          monkeypatch):
  payload = b"First Citizen:\nhello\n"
  calls = []

  def fake_urlopen(url, timeout):
    calls.append((url, timeout))
    return _FakeResponse(payload)

  monkeypatch.delenv("RNNLAB_OFFLINE")
  monkeypatch.setattr(text.urllib.request, "urlopen", fake_urlopen)
  monkeypatch.setitem(text.CORPORA, "tinyshakespeare", text.Corpus(
      url="https://example.invalid/input.txt",
      sha256=__import__("hashlib").sha256(payload).hexdigest()))
  path = text.resolve_corpus("tinyshakespeare")
  assert path == isolated / "cache" / "rnnlab" / "tinyshakespeare" / "input.txt"
  assert path.read_bytes() == payload
  assert calls == [("https://example.invalid/input.txt",
                    text.DOWNLOAD_TIMEOUT_S)]
  assert text.DOWNLOAD_TIMEOUT_S <= 30


def test_download_failure_and_bad_checksum(isolated, monkeypatch):
  monkeypatch.delenv("RNNLAB_OFFLINE")

  def unreachable(url, timeout):
    raise OSError("Network is unreachable")
  monkeypatch.setattr(text.urllib.request, "urlopen", unreachable)
  with pytest.raises(text.DataError, match="Download from .* failed.*"
                     "unreachable"):
    text.resolve_corpus("tinyshakespeare")

  monkeypatch.setattr(text.urllib.request, "urlopen",
                      lambda url, timeout: _FakeResponse(b"tampered"))
  with pytest.raises(text.DataError, match="Checksum mismatch"):
    text.resolve_corpus("tinyshakespeare")
  assert not (isolated / "cache" / "rnnlab" / "tinyshakespeare" /
              "input.txt").exists()


URL = "https://example.invalid/input.txt"


class _Stream:
  """A response of `count` copies of `chunk`, each after `delay_s`, then
  EOF, or `error` if given. read(), without a size, returns them all at
  once (or raises `error`), as a whole-body read sees them."""

  def __init__(self, chunk: bytes, count: int, delay_s: float = 0.0,
               error: Exception | None = None, headers=None):
    self.chunk, self.left, self.delay_s = chunk, count, delay_s
    self.error, self.headers = error, headers or {}

  def __enter__(self):
    return self

  def __exit__(self, *args):
    return False

  def read1(self, n: int = -1) -> bytes:
    del n
    if not self.left:
      if self.error:
        raise self.error
      return b""
    time.sleep(self.delay_s)
    self.left -= 1
    return self.chunk

  def read(self, n: int = -1) -> bytes:
    if n >= 0:
      return self.read1(n)
    if self.error:
      raise self.error
    body, self.left = self.chunk * self.left, 0
    return body


def _download_with(isolated, monkeypatch, response):
  """resolve_corpus with `response` as the server's; -> (error, the files
  left in the corpus's cache directory)."""
  monkeypatch.delenv("RNNLAB_OFFLINE")
  monkeypatch.setattr(text.urllib.request, "urlopen",
                      lambda url, timeout: response)
  monkeypatch.setitem(text.CORPORA, "tinyshakespeare", text.Corpus(
      url=URL, sha256=hashlib.sha256(b"the corpus").hexdigest()))
  with pytest.raises(text.DataError) as e:
    text.resolve_corpus("tinyshakespeare")
  directory = isolated / "cache" / "rnnlab" / "tinyshakespeare"
  return str(e.value), sorted(p.name for p in directory.glob("*")) + sorted(
      p.name for p in directory.glob(".*"))


def test_download_stops_at_the_time_limit(isolated, monkeypatch):
  monkeypatch.setattr(text, "DOWNLOAD_TOTAL_S", 0.3, raising=False)
  start = time.perf_counter()
  message, left = _download_with(isolated, monkeypatch,
                                 _Stream(b"x" * 100, 1000, delay_s=0.05))
  assert time.perf_counter() - start < 2
  assert URL in message and "over 0.3 s, the time limit DOWNLOAD_TOTAL_S" in (
      message)
  assert left == []  # no temporary file
  monkeypatch.undo()
  assert text.DOWNLOAD_TOTAL_S <= 120  # the real limit stays minutes-short


@pytest.mark.parametrize("headers", [None, {"Content-Length": "200000"}])
def test_download_stops_at_the_size_limit(isolated, monkeypatch, headers):
  monkeypatch.setattr(text, "DOWNLOAD_MAX_BYTES", 100_000, raising=False)
  message, left = _download_with(isolated, monkeypatch,
                                 _Stream(b"x" * 65536, 100, headers=headers))
  assert URL in message and "100000" in message
  assert "size limit DOWNLOAD_MAX_BYTES" in message
  assert left == []
  monkeypatch.undo()
  assert 1_200_000 < text.DOWNLOAD_MAX_BYTES <= 64 << 20  # the corpus fits


def test_a_hanging_host_name_lookup_stops_at_the_time_limit(isolated,
                                                           monkeypatch):
  # The socket timeout does not bound getaddrinfo: urllib's own connection
  # path, with only the lookup replaced by one that hangs.
  import socket  # pylint: disable=g-import-not-at-top
  monkeypatch.delenv("RNNLAB_OFFLINE")
  monkeypatch.setattr(text, "DOWNLOAD_TOTAL_S", 0.3, raising=False)
  monkeypatch.setattr(socket, "getaddrinfo",
                      lambda *a, **k: time.sleep(5) or [])
  start = time.perf_counter()
  with pytest.raises(text.DataError) as e:
    text.resolve_corpus("tinyshakespeare")
  assert time.perf_counter() - start < 2
  message = str(e.value)
  assert text.CORPORA["tinyshakespeare"].url in message
  assert "0.3 s, the time limit DOWNLOAD_TOTAL_S" in message
  assert "lookup" in message
  assert not list((isolated / "cache").rglob("*.txt*"))


def test_download_failing_midway_leaves_no_temporary_file(isolated,
                                                         monkeypatch):
  message, left = _download_with(isolated, monkeypatch, _Stream(
      b"x" * 65536, 2, error=ConnectionResetError("reset by peer")))
  assert f"Download from {URL} failed after 131072 bytes" in message
  assert "reset by peer" in message
  assert left == []


def test_cached_corpus_is_checked_against_its_sha256(isolated, monkeypatch):
  payload = b"First Citizen:\nhello\n"
  monkeypatch.setitem(text.CORPORA, "tinyshakespeare", text.Corpus(
      url=URL, sha256=hashlib.sha256(payload).hexdigest()))
  cached = _write(isolated / "cache" / "rnnlab" / "tinyshakespeare" /
                  "input.txt", "First Citizen:\nhel")  # a truncated copy
  with pytest.raises(text.DataError) as e:  # offline: said, not downloaded
    text.resolve_corpus("tinyshakespeare")
  message = str(e.value)
  assert f"The cached {cached} is damaged or another file" in message
  assert hashlib.sha256(payload).hexdigest() in message
  assert "Delete it and rerun without RNNLAB_OFFLINE" in message
  assert cached.read_text() == "First Citizen:\nhel"
  # Online, it is downloaded again over the bad copy.
  calls = []
  monkeypatch.delenv("RNNLAB_OFFLINE")
  monkeypatch.setattr(text.urllib.request, "urlopen", lambda url, timeout: (
      calls.append(url), _Stream(payload, 1))[1])
  assert text.resolve_corpus("tinyshakespeare") == cached
  assert cached.read_bytes() == payload and calls == [URL]
  assert text.resolve_corpus("tinyshakespeare") == cached  # now it matches
  assert calls == [URL]


@pytest.mark.parametrize("content,message", [
    (b"", "is empty"),
    (b"\x00\x01\x02binary", "looks binary"),
    ("caf\u00e9".encode("latin-1"), "not valid UTF-8"),
])
def test_unreadable_files(tmp_path, content, message):
  path = tmp_path / "bad.txt"
  path.write_bytes(content)
  with pytest.raises(text.DataError, match=message):
    text.read_text(path)


def test_tfds_source_rejoins_splits(monkeypatch):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  monkeypatch.setenv("RNNLAB_OFFLINE", "1")
  with tfds.testing.mock_data(num_examples=1):
    expected = "".join(
        text._as_str(tfds.data_source("tiny_shakespeare", split=s)[0]["text"])
        for s in ("train", "validation", "test"))
    assert text.read_tfds_text() == expected
  assert expected


def test_tfds_corpus_not_prepared_fails_fast_without_network(monkeypatch,
                                                             tmp_path):
  # Without the quick check, TFDS retried the download for minutes.
  monkeypatch.delenv("RNNLAB_OFFLINE", raising=False)
  monkeypatch.setattr(tfds_source, "PROBE_HOST", ("127.0.0.1", 9))  # refused
  monkeypatch.setattr(tfds_source, "NETWORK_TIMEOUT_S", 2.0)
  t0 = time.perf_counter()
  with pytest.raises(text.DataError, match=r"(?s)'tiny_shakespeare' \(split "
                     r"'train'\) is not prepared and cannot be downloaded.*"
                     r"--config.text.tfds_data_dir=<dir>"):
    text.read_tfds_text(data_dir=str(tmp_path / "tfds"))
  assert time.perf_counter() - t0 < 10


# --- vocabulary, splits, batches ----------------------------------------------

def test_real_corpus_vocab_and_nanogpt_split(corpus_path):
  corpus = text.read_text(corpus_path)
  assert len(corpus) == 1_115_394
  vocab = text.Vocab.from_text(corpus)
  assert len(vocab) == 65
  splits = text.split_tokens(vocab.encode(corpus), 0.1)
  assert (len(splits["train"]), len(splits["val"]), len(splits["test"])) == (
      1_003_854, 111_540, 0)
  assert vocab.decode(splits["val"][:20]) == corpus[1_003_854:1_003_874]


def test_vocab_json_roundtrip_and_unknown_characters(tmp_path):
  vocab = text.Vocab.from_text("hello world\u00e9")
  path = tmp_path / "vocab.json"
  vocab.save(path)
  assert json.loads(path.read_text())["chars"] == sorted(set("hello world\u00e9"))
  loaded = text.Vocab.load(path)
  assert loaded == vocab
  assert loaded.decode(loaded.encode("hello")) == "hello"
  with pytest.raises(ValueError, match=r"not in the vocabulary: \['Z', 'q'\]"):
    vocab.encode("qZ hello")


def test_split_with_test_fraction():
  splits = text.split_tokens(np.arange(1000), 0.1, 0.05)
  assert [len(splits[s]) for s in ("train", "val", "test")] == [850, 100, 50]
  np.testing.assert_array_equal(np.concatenate(list(splits.values())),
                                np.arange(1000))
  with pytest.raises(ValueError, match="Invalid split fractions"):
    text.split_tokens(np.arange(10), 0.6, 0.5)


def test_random_windows_are_shifted_and_pure_in_seed_and_step():
  tokens = np.arange(500, dtype=np.int32)
  x, y = text.random_windows(tokens, 4, 16, seed=0, step=3)
  assert x.shape == y.shape == (4, 16)
  np.testing.assert_array_equal(y, x + 1)
  np.testing.assert_array_equal(np.diff(x, axis=1), 1)
  x2, _ = text.random_windows(tokens, 4, 16, seed=0, step=3)
  np.testing.assert_array_equal(x, x2)
  x3, _ = text.random_windows(tokens, 4, 16, seed=0, step=4)
  x4, _ = text.random_windows(tokens, 4, 16, seed=1, step=3)
  assert not np.array_equal(x, x3) and not np.array_equal(x, x4)
  with pytest.raises(ValueError, match="seq_len=600 needs at least 601"):
    text.random_windows(tokens, 4, 600, seed=0, step=0)


@pytest.mark.parametrize("n,streams,seq_len", [(101, 4, 8), (50, 7, 5),
                                               (10, 32, 4)])
def test_eval_streams_cover_every_target_once(n, streams, seq_len):
  tokens = np.arange(n, dtype=np.int32)
  data = text.eval_streams(tokens, streams, seq_len)
  c, b, t = data["inputs"].shape
  assert t == seq_len
  mask = data["mask"].astype(bool)
  targets = data["targets"][mask]
  assert sorted(targets.tolist()) == list(range(1, n))
  np.testing.assert_array_equal(data["targets"][mask],
                                data["inputs"][mask] + 1)
  # Each stream is contiguous across chunks: chunk c+1 continues chunk c.
  flat = data["inputs"].transpose(1, 0, 2).reshape(b, c * t)
  flat_mask = data["mask"].transpose(1, 0, 2).reshape(b, c * t).astype(bool)
  for row, m in zip(flat, flat_mask):
    np.testing.assert_array_equal(np.diff(row[m]), 1)
