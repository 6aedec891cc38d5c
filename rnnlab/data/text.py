"""Character-level text data: corpus lookup, vocabulary, batches, eval streams.

Shape legend: B batch (streams), T sequence length, C chunks.

The corpus file is found in this order (`resolve_corpus`):
  1. an explicit path (`config.text.path`);
  2. $RNNLAB_DATA_DIR/<name>/input.txt;
  3. the user cache, $XDG_CACHE_HOME/rnnlab/<name>/input.txt (~/.cache/...);
  4. a download from the dataset's public URL into that cache, within the
     DOWNLOAD_* time and size limits. RNNLAB_OFFLINE=1 skips the network
     entirely (a socket timeout does not bound a DNS lookup).
A cached file is checked against the corpus's sha256 at each use; one that
does not match is downloaded again (or, offline, reported).
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import http.client
import json
import os
import pathlib
import re
import threading
import time
import urllib.request

from absl import logging
import numpy as np

from rnnlab import metrics as metrics_lib
from rnnlab.data import tfds_source
from rnnlab.errors import DataError, UserError


@dataclasses.dataclass(frozen=True)
class Corpus:
  url: str
  sha256: str | None = None


CORPORA: dict[str, Corpus] = {
    "tinyshakespeare": Corpus(
        url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/"
        "tinyshakespeare/input.txt",
        sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"),
}

# Limits of a corpus download. A socket timeout alone bounds each connect
# and read, not a server that trickles bytes, nor one that streams too many.
DOWNLOAD_TIMEOUT_S = 10.0  # each socket operation (connecting, one read)
# The whole transfer, checked between reads (so at most one read longer).
DOWNLOAD_TOTAL_S = 60.0
# tinyshakespeare is 1.1 MB: a reply above this is not the corpus, and is
# cut off before it fills the disk.
DOWNLOAD_MAX_BYTES = 16 << 20
_CHUNK_BYTES = 1 << 16


def cache_dir() -> pathlib.Path:
  base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
  return pathlib.Path(base) / "rnnlab"


def _how_to(name: str, tried: list[str]) -> str:
  return (
      f"Cannot find the {name!r} corpus. Looked in: {', '.join(tried)}.\n"
      "Supply it in one of these ways:\n"
      "  --config.text.path=/path/to/input.txt\n"
      f"  export RNNLAB_DATA_DIR=/dir/holding  (file at <dir>/{name}/input.txt)\n"
      f"  download {CORPORA[name].url if name in CORPORA else 'it'}\n"
      f"    to {cache_dir() / name / 'input.txt'}")


def _open(url: str, timeout: float, total_s: float, deadline: float):
  """urlopen(url) by the monotonic `deadline` (total_s from the start). It
  runs in a worker thread because the socket timeout does not bound the
  host name's lookup (getaddrinfo), which can hang for minutes on a broken
  resolver; a worker still waiting at the deadline is left (a daemon) to
  finish alone."""
  box = {}

  def work():
    try:
      box["response"] = urllib.request.urlopen(url, timeout=timeout)
    except BaseException as e:  # pylint: disable=broad-except
      box["error"] = e

  worker = threading.Thread(target=work, name="rnnlab-download", daemon=True)
  worker.start()
  worker.join(max(0.0, deadline - time.monotonic()))
  if worker.is_alive():
    raise DataError(f"Download from {url} stopped before the first byte: "
                    f"no reply within {total_s:g} s, the time limit "
                    "DOWNLOAD_TOTAL_S (the host name's lookup or the "
                    "connection hangs).")
  if "error" in box:
    raise box["error"]
  return box["response"]


def download(url: str, dest: pathlib.Path, sha256: str | None = None,
             timeout: float = DOWNLOAD_TIMEOUT_S) -> pathlib.Path:
  """Downloads `url` to `dest` atomically (temporary file, checksum, rename)
  within DOWNLOAD_TOTAL_S (the host name's lookup included) and
  DOWNLOAD_MAX_BYTES; `timeout` bounds each socket operation. Raises
  DataError naming `url` and the limit it broke; on any failure `dest` is
  untouched and no temporary file remains."""
  dest.parent.mkdir(parents=True, exist_ok=True)
  total_s, max_bytes = DOWNLOAD_TOTAL_S, DOWNLOAD_MAX_BYTES  # read at call
  deadline = time.monotonic() + total_s
  digest, size = hashlib.sha256(), 0
  with _open(url, timeout, total_s, deadline) as response, \
      metrics_lib.atomic_file(dest) as f:
    declared = (getattr(response, "headers", None) or {}).get(
        "Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
      raise DataError(f"Download from {url} refused: it is {declared} "
                      f"bytes, over the size limit DOWNLOAD_MAX_BYTES="
                      f"{max_bytes}.")
    # read1: at most one socket read, so that the time limit is checked
    # while a slow server trickles bytes (read(n) waits for all n).
    read = getattr(response, "read1", response.read)
    while True:
      try:
        chunk = read(_CHUNK_BYTES)
      except (OSError, http.client.HTTPException) as e:
        raise DataError(f"Download from {url} failed after {size} bytes: "
                        f"{e!r}") from None
      if not chunk:
        break
      size += len(chunk)
      if size > max_bytes:
        raise DataError(f"Download from {url} stopped: over {max_bytes} "
                        f"bytes, the size limit DOWNLOAD_MAX_BYTES.")
      if time.monotonic() > deadline:
        raise DataError(f"Download from {url} stopped after {size} bytes: "
                        f"over {total_s:g} s, the time limit "
                        "DOWNLOAD_TOTAL_S.")
      digest.update(chunk)
      f.write(chunk)
    if sha256 and digest.hexdigest() != sha256:
      raise DataError(f"Checksum mismatch for {url}; not saving it to "
                      f"{dest}.")
  return dest


def resolve_corpus(name: str, path: str | None = None) -> pathlib.Path:
  """Returns the path of corpus `name` (see the module docstring for order)."""
  if path:
    p = pathlib.Path(path).expanduser()
    if not p.is_file():
      raise DataError(f"text.path={path!r} is not a file.")
    return p
  tried = ["config.text.path (unset)"]
  data_dir = os.environ.get("RNNLAB_DATA_DIR")
  if data_dir:
    p = pathlib.Path(data_dir).expanduser() / name / "input.txt"
    if p.is_file():
      return p
    tried.append(str(p))
  else:
    tried.append("$RNNLAB_DATA_DIR (unset)")
  corpus = CORPORA.get(name)
  cached = cache_dir() / name / "input.txt"
  stale = ""
  if cached.is_file():
    # Checked at each use: a damaged or replaced cache is not trained on.
    actual = None
    if corpus and corpus.sha256:
      with cached.open("rb") as f:
        actual = hashlib.file_digest(f, "sha256").hexdigest()
    if actual is None or actual == corpus.sha256:
      return cached
    stale = (f"The cached {cached} is damaged or another file: its sha256 "
             f"is {actual}, expected {corpus.sha256}.")
    tried.append(f"{cached} (wrong sha256)")
  else:
    tried.append(str(cached))
  if corpus is None:
    raise DataError(_how_to(name, tried) + f"\n({name!r} has no download URL; "
                    f"known corpora: {', '.join(sorted(CORPORA))}.)")
  if tfds_source.offline():
    raise DataError((stale + " Delete it and rerun without RNNLAB_OFFLINE to "
                     "download it again.\n" if stale else "") +
                    _how_to(name, tried) + "\n(RNNLAB_OFFLINE is set, so no "
                    "download was tried.)")
  if stale:
    logging.warning("%s Downloading it again from %s.", stale, corpus.url)
  try:
    return download(corpus.url, cached, corpus.sha256)
  except DataError as e:
    raise DataError(f"{_how_to(name, tried)}\n({e})") from None
  except (OSError, http.client.HTTPException) as e:
    raise DataError(_how_to(name, tried) +
                    f"\n(Download from {corpus.url} failed: {e})") from None


def read_text(path: pathlib.Path) -> str:
  """Reads a UTF-8 text file, with clear errors for empty or binary files."""
  raw = path.read_bytes()
  if not raw:
    raise DataError(f"{path} is empty.")
  if b"\x00" in raw[:65536]:
    raise DataError(f"{path} looks binary (it holds NUL bytes); expected "
                    "UTF-8 text.")
  try:
    return raw.decode("utf-8")
  except UnicodeDecodeError as e:
    raise DataError(f"{path} is not valid UTF-8 text ({e}).") from None


def read_tfds_text(name: str = "tiny_shakespeare", data_dir: str = "") -> str:
  """The corpus via TFDS (`pip install rnnlab[tfds]`), splits re-joined.

  TFDS splits it 90/5/5; joining train+validation+test restores the file so
  that the same split as the plain file (see `split_tokens`) applies.
  Prepared on first use under `data_dir` ("" = TFDS's default); offline or
  with RNNLAB_OFFLINE=1, only an already prepared dataset is read
  (`rnnlab.data.tfds_source`).
  """
  parts = []
  for split in ("train", "validation", "test"):
    source = tfds_source.split_source(name, split, data_dir, section="text")
    parts.extend(_as_str(source[i]["text"]) for i in range(len(source)))
  return "".join(parts)


def _as_str(text) -> str:
  return text.decode("utf-8") if isinstance(text, bytes) else str(text)


class _JsonVocab:
  """JSON (de)serialisation shared by the vocabularies: {"type": KIND,
  FIELD: [token, ...]}; saved atomically (`metrics.atomic_file`)."""

  KIND: str
  FIELD: str

  def to_json(self) -> str:
    return json.dumps({"type": self.KIND, self.FIELD: getattr(self,
                                                              self.FIELD)},
                      ensure_ascii=False)

  @classmethod
  def from_json(cls, s: str):
    try:
      d = json.loads(s)
    except json.JSONDecodeError:
      d = None
    expected = (f"Not a {cls.KIND} vocabulary JSON (expected "
                f"{{'type': '{cls.KIND}', '{cls.FIELD}': [...]}}).")
    if (not isinstance(d, dict) or d.get("type") != cls.KIND or
        not isinstance(d.get(cls.FIELD), list)):
      raise UserError(expected)
    bad = [t for t in d[cls.FIELD] if not isinstance(t, str) or not t]
    if bad:
      raise UserError(f"{expected[:-1]} Its {cls.FIELD} must be non-empty "
                      f"strings; got {bad[:5]!r}.")
    return cls(d[cls.FIELD])

  def save(self, path: pathlib.Path):
    metrics_lib.write_text(path, self.to_json())

  @classmethod
  def load(cls, path: pathlib.Path):
    return cls.from_json(_read_vocab_file(path))


class Vocab(_JsonVocab):
  """Characters <-> integer ids, in sorted character order."""

  def __init__(self, chars):
    self.chars = list(chars)
    if not self.chars:
      raise UserError("A character vocabulary needs at least one character.")
    long = [c for c in self.chars if len(c) != 1]
    if long:
      raise UserError(f"A character vocabulary holds single characters; got "
                      f"{long[:5]!r}.")
    if len(set(self.chars)) != len(self.chars):
      raise UserError("Vocabulary characters must be unique.")
    self._ids = {c: i for i, c in enumerate(self.chars)}

  @classmethod
  def from_text(cls, text: str) -> "Vocab":
    return cls(sorted(set(text)))

  def __len__(self):
    return len(self.chars)

  def __eq__(self, other):
    return isinstance(other, Vocab) and self.chars == other.chars

  def unknown(self, text: str) -> list[str]:
    return sorted({c for c in text if c not in self._ids})

  def encode(self, text: str) -> np.ndarray:
    missing = self.unknown(text)
    if missing:
      raise UserError(
          f"Characters not in the vocabulary: {missing!r}. The vocabulary has "
          f"{len(self)} characters: {''.join(self.chars)!r}.")
    return np.fromiter((self._ids[c] for c in text), np.int32, len(text))

  def decode(self, ids) -> str:
    return "".join(self.chars[int(i)] for i in np.asarray(ids).reshape(-1))

  # JSON form: {"type": "char", "chars": [...]} (`_JsonVocab`).
  KIND, FIELD = "char", "chars"


# Words (with inner apostrophes: "o'er", "'tis" splits as "'", "tis"),
# single punctuation marks, and newlines, which carry Shakespeare's layout.
WORD_PATTERN = re.compile(r"\w+(?:'\w+)*|[^\w\s]|\n")
UNK = "<unk>"


def split_words(text: str) -> list[str]:
  return WORD_PATTERN.findall(text)


class WordVocab(_JsonVocab):
  """Words <-> integer ids: the most frequent words of a text, and <unk>
  (id 0) for every other word. Ties in frequency go in sorted order, so the
  vocabulary is a pure function of the text and the cap."""

  def __init__(self, words):
    self.words = list(words)
    if not self.words or self.words[0] != UNK:
      raise UserError(f"A word vocabulary starts with {UNK!r}.")
    if len(set(self.words)) != len(self.words):
      raise UserError("Vocabulary words must be unique.")
    self._ids = {w: i for i, w in enumerate(self.words)}

  @classmethod
  def from_text(cls, text: str, max_size: int) -> "WordVocab":
    if max_size < 2:
      raise UserError(f"text.vocab_size={max_size} must be >= 2 (<unk> and "
                      "at least one word).")
    counts = collections.Counter(split_words(text))
    ranked = sorted(counts, key=lambda w: (-counts[w], w))
    return cls([UNK] + [w for w in ranked if w != UNK][:max_size - 1])

  def __len__(self):
    return len(self.words)

  def __eq__(self, other):
    return isinstance(other, WordVocab) and self.words == other.words

  def unknown(self, text: str) -> list[str]:
    return sorted({w for w in split_words(text) if w not in self._ids})

  def encode(self, text: str) -> np.ndarray:
    """Words outside the vocabulary become <unk>."""
    words = split_words(text)
    return np.fromiter((self._ids.get(w, 0) for w in words), np.int32,
                       len(words))

  def decode(self, ids) -> str:
    out = ""
    for i in np.asarray(ids).reshape(-1):
      word = self.words[int(i)]
      # A space between words, none before punctuation or after a newline.
      glue = "" if (not out or out.endswith("\n") or word == "\n" or
                    not (word[0].isalnum() or word == UNK)) else " "
      out += glue + word
    return out

  KIND, FIELD = "word", "words"


def _read_vocab_file(path: pathlib.Path) -> str:
  try:
    return pathlib.Path(path).read_bytes().decode("utf-8")
  except UnicodeDecodeError:
    raise UserError(f"{path} is not a vocabulary JSON file (not UTF-8 "
                    "text).") from None
  except OSError as e:
    raise DataError(f"Cannot read the vocabulary {path}: {e}") from None


def load_vocab(path: pathlib.Path) -> Vocab | WordVocab:
  """A vocab.json of either kind, by its "type" field."""
  s = _read_vocab_file(path)
  try:
    kind = json.loads(s).get("type")
  except (json.JSONDecodeError, AttributeError, TypeError):
    raise UserError(f"{path} is not a vocabulary JSON file.") from None
  kinds = {"char": Vocab, "word": WordVocab}
  if not isinstance(kind, str) or kind not in kinds:
    raise UserError(f"{path}: unknown vocabulary type {kind!r}. Valid "
                    "choices: 'char', 'word'.")
  return kinds[kind].from_json(s)


def split_tokens(tokens: np.ndarray, val_fraction: float,
                 test_fraction: float = 0.0) -> dict[str, np.ndarray]:
  """Contiguous split: train first, then validation, then test (at the end).

  With val_fraction=0.1, test_fraction=0 this is nanoGPT's 90/10 split.
  """
  n = len(tokens)
  if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and
          val_fraction + test_fraction < 1):
    raise UserError(f"Invalid split fractions: val={val_fraction}, "
                     f"test={test_fraction}; each in [0, 1), sum below 1.")
  n_train = int(n * (1 - val_fraction - test_fraction))  # as nanoGPT rounds
  n_test = int(n * test_fraction)
  n_val = n - n_train - n_test
  return {"train": tokens[:n_train],
          "val": tokens[n_train:n_train + n_val],
          "test": tokens[n_train + n_val:]}


def random_windows(tokens: np.ndarray, batch_size: int, seq_len: int,
                   seed: int, step: int, rows: slice | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
  """B random windows: inputs [B, T] and next-token targets [B, T].

  A pure function of (seed, step), so a resumed run sees the same batches.
  `rows` reads only those rows of the batch (one process's share).
  """
  max_start = len(tokens) - seq_len - 1
  if max_start < 0:
    raise UserError(f"seq_len={seq_len} needs at least {seq_len + 1} "
                     f"tokens; the training split has {len(tokens)}.")
  rng = np.random.default_rng([seed, step])
  starts = rng.integers(0, max_start + 1, size=batch_size)[rows or slice(None)]
  idx = starts[:, None] + np.arange(seq_len + 1)
  windows = tokens[idx]
  return windows[:, :-1], windows[:, 1:]


def stateful_chunks_per_epoch(num_tokens: int, batch_size: int,
                              seq_len: int) -> int:
  """Chunks of length seq_len per stream and epoch (see `stateful_chunks`)."""
  stream_len = (num_tokens - 1) // batch_size
  chunks = stream_len // seq_len - 1  # one chunk spent on the epoch's offset
  if chunks < 1:
    raise UserError(
        f"train.order='stateful' with batch_size={batch_size} and "
        f"seq_len={seq_len} needs at least {batch_size * 2 * seq_len + 1} "
        f"training tokens (each stream two chunks long); the training split "
        f"has {num_tokens}.")
  return chunks


def stateful_chunks(tokens: np.ndarray, batch_size: int, seq_len: int,
                    seed: int, step: int, rows: slice | None = None
                    ) -> tuple[np.ndarray, np.ndarray, bool]:
  """Truncated-BPTT batches (char-rnn's loader): inputs, targets [B, T] and
  whether this chunk starts an epoch (the carried state must be reset).

  The tokens are cut into B contiguous streams; step k of an epoch reads the
  k-th chunk of every stream, so row b of step k+1 continues exactly where
  row b of step k ended. Each epoch starts at an offset in [0, T) drawn from
  (seed, epoch), so chunk boundaries move between epochs. A pure function of
  (seed, step), as `random_windows`; `rows` reads only those streams.
  """
  chunks = stateful_chunks_per_epoch(len(tokens), batch_size, seq_len)
  stream_len = (len(tokens) - 1) // batch_size
  epoch, k = divmod(step, chunks)
  offset = int(np.random.default_rng([seed, epoch]).integers(seq_len))
  streams = np.arange(batch_size)[rows or slice(None)]
  starts = streams * stream_len + offset + k * seq_len
  idx = starts[:, None] + np.arange(seq_len + 1)
  windows = tokens[idx]
  return windows[:, :-1], windows[:, 1:], k == 0


def eval_streams(tokens: np.ndarray, num_streams: int,
                 seq_len: int) -> dict[str, np.ndarray]:
  """Lays a split out as B contiguous streams cut into chunks of length T.

  Every next-token target of the split appears exactly once, with mask 1;
  the tail is padded with mask 0. Carrying the state from chunk c to c+1
  gives each prediction the full history of its stream, as char-rnn does.

  Returns inputs, targets, mask, each [C, B, T].
  """
  n_targets = len(tokens) - 1
  if n_targets < 1:
    raise UserError("An evaluation split needs at least 2 tokens.")
  num_streams = max(1, min(num_streams, n_targets))
  stream_len = -(-n_targets // num_streams)
  num_chunks = -(-stream_len // seq_len)
  padded = num_chunks * seq_len
  inputs = np.zeros((num_streams, padded), np.int32)
  targets = np.zeros((num_streams, padded), np.int32)
  mask = np.zeros((num_streams, padded), np.float32)
  for b in range(num_streams):
    lo = b * stream_len
    hi = min(lo + stream_len, n_targets)
    n = max(hi - lo, 0)
    inputs[b, :n] = tokens[lo:hi]
    targets[b, :n] = tokens[lo + 1:hi + 1]
    mask[b, :n] = 1.0

  def chunked(a):  # [B, C*T] -> [C, B, T]
    return a.reshape(num_streams, num_chunks, seq_len).transpose(1, 0, 2)

  return {"inputs": chunked(inputs), "targets": chunked(targets),
          "mask": chunked(mask)}
