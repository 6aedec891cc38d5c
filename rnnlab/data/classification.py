"""Sequence classification data: variable-length sequences with one label.

Shape legend: N examples, B batch, T time (padded), D features per frame.

Sources (`config.classify.source`):
  japanese_vowels  UEA JapaneseVowels (Kudo et al. 1999), read from sktime's
                   package data, so no network is needed: 9 speakers saying
                   the vowels /ae/, 12 LPC cepstrum coefficients per frame,
                   7-29 frames, 270 train / 370 test utterances. Features are
                   standardised with the mean and std of the (carved) training
                   split's valid frames only.
  tfds             a text classification dataset through `tfds.data_source`
                   (ArrayRecord, no TensorFlow needed), e.g. "imdb_reviews" or
                   "glue/sst2"; word or character tokens, the vocabulary built
                   from the training split.
  csv              any CSV of labelled text (classify.train_csv, optional
                   classify.test_csv; classify.text_column and
                   label_column): labels are strings, the classes the
                   training file's labels, sorted; without a test file a
                   seeded stratified classify.test_fraction of the training
                   file is the test split.

The validation split is always carved out of the training data, stratified
by label and seeded (`stratified_split`), so model selection never sees the
test split.

A split is right-padded: inputs [N, T] int32 token ids (0 = <pad>) or
[N, T, D] float32 frames (0 after each length), lengths [N] int32 (>= 1),
labels [N] int32 in [0, num_classes).
"""
from __future__ import annotations

import collections
import dataclasses
import pathlib
import re
from typing import Any, Sequence

import numpy as np

from rnnlab.data import rotten_tomatoes
from rnnlab.data import tfds_source
from rnnlab.errors import DataError, UserError

SOURCES = ("japanese_vowels", "tfds", "csv")
TOKENIZATIONS = ("word", "char")
PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1



@dataclasses.dataclass
class Split:
  """Right-padded examples of one split (see the module docstring)."""
  inputs: np.ndarray   # [N, T] int32 or [N, T, D] float32
  lengths: np.ndarray  # [N] int32
  labels: np.ndarray   # [N] int32

  def __len__(self) -> int:
    return len(self.labels)

  def take(self, index: np.ndarray) -> "Split":
    """The examples at `index`, re-padded to their own longest."""
    lengths = self.lengths[index]
    width = int(lengths.max()) if len(index) else 1
    return Split(self.inputs[index, :width], lengths, self.labels[index])


def pad_sequences(seqs: Sequence[np.ndarray], dtype) -> tuple[np.ndarray,
                                                              np.ndarray]:
  """Right-pads [T_i] or [T_i, D] arrays with zeros: ([N, T_max, ...],
  lengths [N])."""
  lengths = np.array([len(s) for s in seqs], np.int32)
  if len(seqs) == 0 or lengths.min() < 1:
    raise DataError("Every sequence needs at least one step.")
  out = np.zeros((len(seqs), int(lengths.max())) + seqs[0].shape[1:], dtype)
  for i, s in enumerate(seqs):
    out[i, :len(s)] = s
  return out, lengths


def stratified_split(labels: np.ndarray, fraction: float, seed: int,
                     key: str = "classify.val_fraction",
                     stream: tuple[int, ...] = ()
                     ) -> tuple[np.ndarray, np.ndarray]:
  """Indices (kept, held out): round(fraction * n_c) of each class's n_c
  examples go to the held-out part (at least 1 if fraction > 0 and the
  class has 2 or more), chosen by `np.random.default_rng([seed, *stream,
  c])`. `key` names the fraction's config key in errors."""
  if not 0 < fraction < 1:
    raise UserError(f"{key}={fraction!r} must be in (0, 1): the held-out "
                    "split is carved from the training data.")
  kept, held = [], []
  for c in np.unique(labels):
    index = np.flatnonzero(labels == c)
    index = np.random.default_rng([seed, *stream, int(c)]).permutation(index)
    n_held = int(round(fraction * len(index)))
    n_held = min(max(n_held, 1 if len(index) > 1 else 0), len(index) - 1)
    held.append(index[:n_held])
    kept.append(index[n_held:])
  return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))


# --- real-valued frames: JapaneseVowels -----------------------------------


@dataclasses.dataclass
class FeatureStats:
  """Per-feature mean and std [D] over the valid frames of a split."""
  mean: np.ndarray
  std: np.ndarray

  @classmethod
  def of(cls, split: Split) -> "FeatureStats":
    frames = split.inputs[np.arange(split.inputs.shape[1])[None, :] <
                          split.lengths[:, None]]  # [sum of lengths, D]
    std = frames.std(0)
    # A constant feature carries no information; leave it at 0, not NaN.
    return cls(frames.mean(0), np.where(std > 0, std, 1.0))

  def apply(self, split: Split) -> Split:
    valid = (np.arange(split.inputs.shape[1])[None, :] <
             split.lengths[:, None])[..., None]
    normalised = np.where(valid, (split.inputs - self.mean) / self.std, 0.0)
    return dataclasses.replace(split, inputs=normalised.astype(np.float32))

  def to_dict(self) -> dict[str, Any]:
    return {"mean": self.mean.tolist(), "std": self.std.tolist()}

  def matches(self, d: dict[str, Any]) -> bool:
    return (len(d.get("mean", ())) == len(self.mean) and
            np.allclose(d["mean"], self.mean, rtol=1e-5, atol=1e-6) and
            np.allclose(d["std"], self.std, rtol=1e-5, atol=1e-6))


def load_japanese_vowels() -> dict[str, tuple[list[np.ndarray], np.ndarray]]:
  """{"train", "test"} -> (frames: list of [T_i, 12] float32, labels [N]
  str "1".."9"), from the .ts files that ship with sktime."""
  try:
    from sktime.datasets import load_japanese_vowels as load  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise DataError("classify.source='japanese_vowels' reads sktime's package "
                    "data: pip install sktime.") from None
  out = {}
  for split in ("train", "test"):
    # A nested DataFrame: one row per utterance, one pd.Series per channel.
    frame, labels = load(split=split, return_X_y=True)
    seqs = [np.stack([np.asarray(cell, np.float32) for cell in row], -1)
            for row in frame.itertuples(index=False)]
    out[split] = (seqs, np.asarray(labels).astype(str))
  return out


# --- text: tokens and vocabulary -------------------------------------------

_WORD_RE = re.compile(r"\w+|[^\w\s]")


def tokenize(text: str, tokenization: str) -> list[str]:
  """"word": lower-cased runs of word characters and single punctuation
  marks; "char": the characters as they are."""
  if tokenization == "word":
    return _WORD_RE.findall(text.lower())
  if tokenization == "char":
    return list(text)
  raise UserError(f"Unknown classify.tokenization {tokenization!r}. Valid "
                  f"choices: {', '.join(map(repr, TOKENIZATIONS))}.")


class TokenVocab:
  """Tokens <-> ids; 0 = <pad>, 1 = <unk>, then by training frequency."""

  def __init__(self, tokens: Sequence[str], tokenization: str):
    tokenize("", tokenization)  # validates the name
    self.tokens = [PAD, UNK] + [t for t in tokens if t not in (PAD, UNK)]
    if len(set(self.tokens)) != len(self.tokens):
      raise UserError("Vocabulary tokens must be unique.")
    self.tokenization = tokenization
    self._ids = {t: i for i, t in enumerate(self.tokens)}

  @classmethod
  def build(cls, texts: Sequence[str], tokenization: str,
            max_size: int) -> "TokenVocab":
    """The max_size - 2 most frequent training tokens (ties: token order)."""
    if max_size < 3:
      raise UserError(f"classify.vocab_size={max_size} must be >= 3 (<pad>, "
                      "<unk> and one token).")
    counts = collections.Counter(
        t for text in texts for t in tokenize(text, tokenization))
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return cls([t for t, _ in ranked[:max_size - 2]], tokenization)

  def __len__(self) -> int:
    return len(self.tokens)

  def __eq__(self, other) -> bool:
    return (isinstance(other, TokenVocab) and self.tokens == other.tokens and
            self.tokenization == other.tokenization)

  def encode(self, text: str, max_tokens: int) -> np.ndarray:
    """[min(n, max_tokens)] ids (truncated); an empty text is one <unk>."""
    ids = [self._ids.get(t, UNK_ID)
           for t in tokenize(text, self.tokenization)[:max_tokens]]
    return np.asarray(ids or [UNK_ID], np.int32)

  def to_dict(self) -> dict[str, Any]:
    return {"type": "classify_vocab", "tokenization": self.tokenization,
            "tokens": self.tokens}

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> "TokenVocab":
    if d.get("type") != "classify_vocab" or not isinstance(d.get("tokens"),
                                                            list):
      raise UserError("Not a classification vocabulary (expected {'type': "
                      "'classify_vocab', 'tokenization': ..., 'tokens': "
                      "[...]}).")
    return cls(d["tokens"], d["tokenization"])


# --- text: TFDS --------------------------------------------------------------


# rnnlab's own TFDS datasets (builders of files a user fetches by hand):
# name -> data_source(split, data_dir, manual_dir).
OWN_TFDS = {rotten_tomatoes.NAME: rotten_tomatoes.data_source}


def read_tfds_examples(name: str, split: str, text_feature: str,
                       label_feature: str, data_dir: str = "",
                       manual_dir: str = ""
                       ) -> tuple[list[str], np.ndarray, list[str] | None]:
  """(texts, labels [N] int32, class names or None) of one TFDS split;
  `manual_dir` for rnnlab's own datasets (OWN_TFDS)."""
  if name in OWN_TFDS:
    source = OWN_TFDS[name](split, data_dir, manual_dir)
  else:
    source = tfds_source.split_source(name, split, data_dir)
  texts, labels = [], []
  for i in range(len(source)):
    example = source[i]
    for key in (text_feature, label_feature):
      if key not in example:
        raise UserError(f"TFDS dataset {name!r} has no feature {key!r}. Its "
                        f"features: {', '.join(sorted(example))}. Set "
                        "classify.text_feature / classify.label_feature.")
    text = example[text_feature]
    texts.append(text.decode("utf-8") if isinstance(text, bytes)
                 else str(text))
    labels.append(int(example[label_feature]))
  labels = np.asarray(labels, np.int32)
  if len(labels) and labels.min() < 0:
    raise DataError(f"Split {split!r} of {name!r} holds unlabelled examples "
                    f"(label {labels.min()}); GLUE's test splits are "
                    "unlabelled, so use e.g. classify.test_split='validation'.")
  names = None
  features = getattr(getattr(source, "dataset_info", None), "features", None)
  if features is not None and label_feature in features:
    names = list(getattr(features[label_feature], "names", None) or ()) or None
  return texts, labels, names


# --- the dataset of a config -------------------------------------------------


@dataclasses.dataclass
class Dataset:
  """Splits "train", "val", "test" and what a model needs to know."""
  splits: dict[str, Split]
  classes: list[str]
  vocab: TokenVocab | None = None         # token inputs
  feature_stats: FeatureStats | None = None  # real-valued inputs

  @property
  def num_features(self) -> int:
    """D of real-valued inputs; 0 for tokens."""
    x = self.splits["train"].inputs
    return int(x.shape[-1]) if x.ndim == 3 else 0

  def metadata(self) -> dict[str, Any]:
    """What inference needs besides the checkpoint (JSON)."""
    out = {"classes": self.classes}
    if self.vocab is not None:
      out["vocab"] = self.vocab.to_dict()
    if self.feature_stats is not None:
      out["feature_stats"] = self.feature_stats.to_dict()
    return out

  def check_metadata(self, saved: dict[str, Any], path: pathlib.Path):
    """Raises UserError if `saved` (an earlier run's metadata) differs."""
    problems = []
    if saved.get("classes") != self.classes:
      problems.append(f"classes {saved.get('classes')} vs {self.classes}")
    if self.vocab is not None:
      old = TokenVocab.from_dict(saved.get("vocab") or {"type": None})
      if old != self.vocab:
        problems.append(f"vocabulary ({old.tokenization}, {len(old)} tokens) "
                        f"vs ({self.vocab.tokenization}, {len(self.vocab)} "
                        "tokens)")
    if self.feature_stats is not None and not self.feature_stats.matches(
        saved.get("feature_stats") or {}):
      problems.append("feature normalisation statistics")
    if problems:
      raise UserError(f"{path} does not match this run's data: "
                      f"{'; '.join(problems)}. Use a new workdir for "
                      "different data or tokenisation.")


def _class_ids(labels: np.ndarray) -> tuple[np.ndarray, list[str]]:
  """String labels -> ids in sorted order (numerically if all digits)."""
  names = sorted(set(labels.tolist()),
                 key=lambda s: (0, int(s)) if s.isdigit() else (1, s))
  index = {n: i for i, n in enumerate(names)}
  return np.array([index[s] for s in labels], np.int32), names


def japanese_vowels_dataset(val_fraction: float, seed: int) -> Dataset:
  raw = load_japanese_vowels()
  train_labels, classes = _class_ids(raw["train"][1])
  test_labels = np.array([classes.index(s) for s in raw["test"][1]], np.int32)
  full_train = Split(*pad_sequences(raw["train"][0], np.float32),
                     train_labels)
  test = Split(*pad_sequences(raw["test"][0], np.float32), test_labels)
  kept, held = stratified_split(full_train.labels, val_fraction, seed)
  train, val = full_train.take(kept), full_train.take(held)
  stats = FeatureStats.of(train)  # the training part only
  splits = {"train": stats.apply(train), "val": stats.apply(val),
            "test": stats.apply(test)}
  return Dataset(splits, classes, feature_stats=stats)


def tfds_dataset(d, seed: int) -> Dataset:
  """`d` is config.classify: name, train/val/test_split, text/label_feature,
  tfds_data_dir, tokenization, vocab_size, max_tokens, val_fraction."""
  read = lambda split: read_tfds_examples(
      d.tfds_name, split, d.text_feature, d.label_feature, d.tfds_data_dir,
      d.tfds_manual_dir)
  texts, labels, names = read(d.train_split)
  if d.val_split:
    val_texts, val_labels, _ = read(d.val_split)
  else:
    kept, held = stratified_split(labels, d.val_fraction, seed)
    val_texts, val_labels = [texts[i] for i in held], labels[held]
    texts, labels = [texts[i] for i in kept], labels[kept]
  test_texts, test_labels, _ = read(d.test_split)
  num_classes = max(len(names or ()), int(labels.max()) + 1)
  classes = names or [str(i) for i in range(num_classes)]
  return text_dataset({"train": (texts, labels),
                       "val": (val_texts, val_labels),
                       "test": (test_texts, test_labels)}, classes, d)


def text_dataset(raw: dict[str, tuple[list[str], np.ndarray]],
                 classes: list[str], d) -> Dataset:
  """Token splits of texts and integer labels {"train"|"val"|"test":
  (texts, labels [N])}: the vocabulary of config.classify `d` (tokenization,
  vocab_size) built from the training texts, each text cut at max_tokens."""
  vocab = TokenVocab.build(raw["train"][0], d.tokenization, d.vocab_size)
  splits = {}
  for split, (texts, labels) in raw.items():
    if len(labels) and labels.max() >= len(classes):
      raise DataError(f"The {split} split has label {labels.max()}, "
                      f"but the dataset has {len(classes)} classes.")
    splits[split] = Split(*pad_sequences(
        [vocab.encode(t, d.max_tokens) for t in texts], np.int32), labels)
  return Dataset(splits, classes, vocab=vocab)


# --- text: any CSV of labelled text -------------------------------------------


def read_labelled_csv(path: str, text_column: str, label_column: str,
                      what: str) -> tuple[list[str], list[str]]:
  """(texts, labels as strings) of a CSV file; `what` names the config key
  of the path in errors. Cells are read as text (a label "1" stays "1")."""
  import pandas as pd  # pylint: disable=g-import-not-at-top
  file = pathlib.Path(path).expanduser()
  if not file.is_file():
    raise DataError(f"{what}={path!r}: no such file.")
  try:
    frame = pd.read_csv(file, dtype=str, keep_default_na=False)
  except pd.errors.EmptyDataError:
    raise DataError(f"{what}={path!r} is empty (expected a header row and "
                    "one row per example).") from None
  except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as e:
    raise DataError(f"{what}={path!r} is not a readable CSV file: "
                    f"{e}") from None
  columns = [str(c) for c in frame.columns]
  for key, column in (("classify.text_column", text_column),
                      ("classify.label_column", label_column)):
    if column not in columns:
      raise DataError(f"{key}={column!r} is not a column of {file}. Valid "
                      f"choices: {', '.join(map(repr, columns))}.")
  if not len(frame):
    raise DataError(f"{what}={path!r} has a header but no rows.")
  labels = frame[label_column].str.strip()
  missing = np.flatnonzero((labels == "").to_numpy())
  if missing.size:
    rows = ", ".join(str(i + 2) for i in missing[:5])
    raise DataError(f"{file}: {missing.size} row(s) without a label in "
                    f"column {label_column!r} (rows {rows}"
                    f"{', ...' if missing.size > 5 else ''}; the header is "
                    "row 1).")
  return frame[text_column].tolist(), labels.tolist()


def csv_dataset(d, seed: int) -> Dataset:
  """Config.classify `d` with source "csv": train_csv (and test_csv, or a
  stratified test_fraction of train_csv drawn with split_seed); validation
  is val_fraction of the rest, drawn with `seed`. The classes are the
  training labels, as strings, sorted."""
  texts, labels = read_labelled_csv(d.train_csv, d.text_column,
                                    d.label_column, "classify.train_csv")
  classes = sorted(set(labels))
  if len(classes) < 2:
    raise DataError(f"classify.train_csv={d.train_csv!r} has a single class "
                    f"({classes[0]!r} in column {d.label_column!r}); "
                    "classification needs at least two.")
  ids = np.array([classes.index(l) for l in labels], np.int32)
  if d.test_csv:
    test_texts, test_labels = read_labelled_csv(
        d.test_csv, d.text_column, d.label_column, "classify.test_csv")
    unknown = sorted(set(test_labels) - set(classes))
    if unknown:
      raise DataError(f"classify.test_csv={d.test_csv!r} has label(s) "
                      f"{', '.join(map(repr, unknown[:5]))} that "
                      f"classify.train_csv never has (its classes: "
                      f"{', '.join(map(repr, classes))}).")
    test = (test_texts, np.array([classes.index(l) for l in test_labels],
                                 np.int32))
  else:
    # Seeded by split_seed, not config.seed: runs with different seeds
    # are tested on the same examples.
    kept, held = stratified_split(ids, d.test_fraction, d.split_seed,
                                  "classify.test_fraction", stream=(1,))
    test = ([texts[i] for i in held], ids[held])
    texts, ids = [texts[i] for i in kept], ids[kept]
  kept, held = stratified_split(ids, d.val_fraction, seed)
  return text_dataset({"train": ([texts[i] for i in kept], ids[kept]),
                       "val": ([texts[i] for i in held], ids[held]),
                       "test": test}, classes, d)


def load_dataset(d, seed: int) -> Dataset:
  """The Dataset of config.classify `d` (classify.source picks the loader)."""
  if d.source == "japanese_vowels":
    return japanese_vowels_dataset(d.val_fraction, seed)
  if d.source == "tfds":
    return tfds_dataset(d, seed)
  if d.source == "csv":
    return csv_dataset(d, seed)
  raise UserError(f"Unknown classify.source {d.source!r} for task='classify'. "
                  f"Valid choices: {', '.join(map(repr, SOURCES))}.")


# --- batches -----------------------------------------------------------------


def round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


def epoch_batches(lengths: np.ndarray, batch_size: int, seed: int,
                  epoch: int, bucket: bool) -> np.ndarray:
  """[steps_per_epoch, B] example indices of one epoch (remainder dropped):
  a shuffle drawn from (seed, epoch). With `bucket`, each window of 50
  batches is sorted by length before it is cut into batches, and the
  batches are shuffled again, so a batch holds similar lengths (less
  padding) while its composition still changes every epoch."""
  n = len(lengths)
  steps = n // batch_size
  if steps < 1:
    raise UserError(f"train.batch_size={batch_size} is larger than the "
                    f"training split ({n} examples).")
  rng = np.random.default_rng([seed, 7, epoch])
  order = rng.permutation(n)
  if bucket:
    window = 50 * batch_size
    order = np.concatenate([
        chunk[np.argsort(lengths[chunk], kind="stable")]
        for chunk in np.split(order, range(window, n, window))])
  batches = order[:steps * batch_size].reshape(steps, batch_size)
  return batches[rng.permutation(steps)] if bucket else batches


def make_batch(split: Split, index: np.ndarray, pad_multiple: int,
               weights: np.ndarray | None = None,
               width: int | None = None) -> dict[str, np.ndarray]:
  """{"inputs", "lengths", "labels", "weights" [B]} of the examples at
  `index`, padded to their longest rounded up to `pad_multiple` (bounding
  the number of shapes, hence compilations), or to `width` if given."""
  lengths = split.lengths[index]
  if width is None:
    width = round_up(int(lengths.max()), pad_multiple)
  inputs = split.inputs[index, :width]
  if inputs.shape[1] < width:  # the split's own padding is shorter
    pad = [(0, 0)] * inputs.ndim
    pad[1] = (0, width - inputs.shape[1])
    inputs = np.pad(inputs, pad)
  return {"inputs": inputs, "lengths": lengths,
          "labels": split.labels[index],
          "weights": (np.ones(len(index), np.float32) if weights is None
                      else weights)}


def eval_batches(split: Split, batch_size: int, pad_multiple: int
                 ) -> list[dict[str, np.ndarray]]:
  """The whole split in batches of min(batch_size, N), in order, each padded
  as `make_batch`; the last batch is filled up with repeats of example 0 at
  weight 0, so every batch has the same size."""
  n = len(split)
  size = min(batch_size, n)
  batches = []
  for start in range(0, n, size):
    index = np.arange(start, min(start + size, n))
    weights = np.ones(size, np.float32)
    if len(index) < size:
      weights[len(index):] = 0.0
      index = np.concatenate([index, np.zeros(size - len(index), np.int64)])
    batches.append(make_batch(split, index, pad_multiple, weights))
  return batches
