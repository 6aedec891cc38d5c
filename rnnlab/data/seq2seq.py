"""Sequence-to-sequence problems: addition, date normalisation and the
translation of number words between two languages.

Each problem yields (source, target) string pairs from integers `seed` and
`index`, so every split is fixed by the seed and a training batch is a pure
function of (seed, step). Held-out items never appear in training:

  addition  "a+b" -> "c", operands of up to `max_digits` digits, as in
            Flax's seq2seq example. Test and validation *pairs* (a, b) are
            drawn once; training rejects them.
  dates     a date in 1900-2099 written by babel in one of several locales
            and formats -> ISO "YYYY-MM-DD". The *dates* are split, so no
            date in the test set is seen in training in any rendering.
            Renderings are unambiguous: month names (babel's full, long,
            medium) or a numeric form with a four-digit year, which is
            prefixed with its locale ("es_ES 14/2/2002"), since 3/2/2002 is
            a different day in en_US.
  numbers   a number written out in one language -> the same number in
            another, both as num2words writes them (e.g. French "quatre-vingt-
            dix-sept" -> English "ninety-seven"). The *values* are split:
            no test number is seen in training in either language.

Sequences are encoded with `Seq2SeqVocab` (PAD=0, BOS=1, EOS=2, then
characters) and right-padded to fixed lengths, so one jit covers all
batches.
"""
from __future__ import annotations

import datetime
import json
import pathlib
from typing import Callable, Sequence

import numpy as np

from rnnlab import metrics as metrics_lib
from rnnlab.errors import UserError
from rnnlab.registry import lookup

PAD, BOS, EOS = 0, 1, 2
SPECIALS = ("<pad>", "<bos>", "<eos>")


class Seq2SeqVocab:
  """Characters <-> ids after the three special tokens; JSON on disk."""

  def __init__(self, chars: Sequence[str]):
    self.chars = sorted(set(chars))
    self._ids = {c: i + len(SPECIALS) for i, c in enumerate(self.chars)}

  def __len__(self):
    return len(SPECIALS) + len(self.chars)

  def __eq__(self, other):
    return isinstance(other, Seq2SeqVocab) and self.chars == other.chars

  def encode(self, text: str, length: int, *, eos: bool = False,
             bos: bool = False) -> np.ndarray:
    """text -> [length] ids, right-padded with PAD."""
    missing = sorted({c for c in text if c not in self._ids})
    if missing:
      raise UserError(f"Characters not in the vocabulary: {missing!r}. It "
                      f"has: {''.join(self.chars)!r}.")
    ids = ([BOS] if bos else []) + [self._ids[c] for c in text] + (
        [EOS] if eos else [])
    if len(ids) > length:
      raise UserError(f"{text!r} needs {len(ids)} positions; the maximum is "
                      f"{length}. Raise seq2seq.max_source_len/max_target_len.")
    return np.array(ids + [PAD] * (length - len(ids)), np.int32)

  def decode(self, ids) -> str:
    """Up to the first EOS; specials dropped."""
    out = []
    for i in np.asarray(ids).reshape(-1):
      i = int(i)
      if i == EOS:
        break
      if i >= len(SPECIALS):
        out.append(self.chars[i - len(SPECIALS)])
    return "".join(out)

  def token_label(self, i: int) -> str:
    return SPECIALS[i] if i < len(SPECIALS) else self.chars[i - len(SPECIALS)]

  def save(self, path: pathlib.Path):
    """Writes it atomically: a crash leaves no half-written vocabulary."""
    metrics_lib.write_text(path, json.dumps(
        {"type": "seq2seq_char", "chars": self.chars}, ensure_ascii=False))

  @classmethod
  def load(cls, path: pathlib.Path) -> "Seq2SeqVocab":
    d = json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
    if (not isinstance(d, dict) or d.get("type") != "seq2seq_char" or
        not isinstance(d.get("chars"), list)):
      raise UserError(f"{path} is not a seq2seq vocabulary (expected "
                      "{'type': 'seq2seq_char', 'chars': [...]}).")
    return cls(d["chars"])


def _rng(seed: int, *stream: int) -> np.random.Generator:
  return np.random.default_rng([seed, *stream])


# --- addition --------------------------------------------------------------


class Addition:
  """"a+b" -> "c" with 0 <= a, b < 10**max_digits."""

  @staticmethod
  def check_args(max_digits: int, num_val: int, num_test: int) -> None:
    """UserError for arguments the constructor cannot honour."""
    if max_digits <= 0:
      raise UserError(f"seq2seq.max_digits must be positive, got "
                      f"{max_digits}.")
    if num_val + num_test > (10**max_digits)**2 // 2:
      raise UserError(f"Too many held-out pairs (seq2seq.num_val={num_val} "
                      f"+ seq2seq.num_test={num_test}) for max_digits="
                      f"{max_digits}: at most half of the "
                      f"{(10**max_digits)**2} pairs.")

  def __init__(self, seed: int, max_digits: int = 3, num_val: int = 1000,
               num_test: int = 2000):
    self.check_args(max_digits, num_val, num_test)
    self.seed, self.limit = seed, 10**max_digits
    rng = _rng(seed, 0)
    held = []
    seen = set()
    while len(held) < num_val + num_test:  # distinct pairs, fixed by seed
      a, b = (int(v) for v in rng.integers(0, self.limit, 2))
      if (a, b) not in seen:
        seen.add((a, b))
        held.append((a, b))
    self._held_out = seen
    self.splits = {"val": held[:num_val], "test": held[num_val:]}
    self.max_source_len = 2 * max_digits + 1
    self.max_target_len = max_digits + 2  # digits + EOS

  def chars(self) -> str:
    return "0123456789+"

  @staticmethod
  def render(pair) -> tuple[str, str]:
    a, b = pair
    return f"{a}+{b}", str(a + b)

  def train_examples(self, n: int, step: int, rows: slice | None = None
                     ) -> list[tuple[str, str]]:
    """n training pairs for `step` (pure in seed, step); `rows` renders only
    those of them."""
    rng = _rng(self.seed, 1, step)
    pairs = []
    while len(pairs) < n:
      a, b = (int(v) for v in rng.integers(0, self.limit, 2))
      if (a, b) not in self._held_out:
        pairs.append((a, b))
    return [self.render(p) for p in pairs[rows or slice(None)]]

  def eval_examples(self, split: str) -> list[tuple[str, str]]:
    return [self.render(p) for p in self.splits[split]]


# --- dates -----------------------------------------------------------------

DATE_LOCALES = ("en_US", "de_DE", "fr_FR", "es_ES", "it_IT", "pt_BR",
                "nl_NL")
DATE_FORMATS = ("full", "long", "medium", "numeric")
FIRST_DATE, LAST_DATE = datetime.date(1900, 1, 1), datetime.date(2099, 12, 31)


def render_date(date: datetime.date, locale: str, fmt: str) -> str:
  """One human rendering of `date`; numeric ones carry their locale."""
  from babel import dates as babel_dates  # pylint: disable=g-import-not-at-top
  if fmt == "numeric":
    pattern = babel_dates.get_date_format("short", locale=locale).pattern
    # Four-digit years: "yy" would make 1902 and 2002 the same string.
    pattern = pattern.replace("yyyy", "y").replace("yy", "y")
    text = babel_dates.format_date(date, format=pattern, locale=locale)
  else:
    text = babel_dates.format_date(date, format=fmt, locale=locale)
  if not any(ch.isalpha() for ch in text):  # numeric: say whose convention
    text = f"{locale} {text}"
  return text


class Dates:
  """A date in one of several locales and formats -> "YYYY-MM-DD"."""

  @staticmethod
  def check_args(locales: Sequence[str], formats: Sequence[str],
                 num_val: int, num_test: int) -> None:
    """UserError for arguments the constructor cannot honour."""
    from babel import Locale  # pylint: disable=g-import-not-at-top
    if not locales or not formats:
      raise UserError("seq2seq.locales and seq2seq.formats must each name "
                      "at least one.")
    for loc in locales:
      try:
        Locale.parse(loc)
      except Exception:  # babel raises several types
        raise UserError(f"Unknown locale {loc!r} for seq2seq.locales; e.g. "
                        f"{', '.join(DATE_LOCALES)}.") from None
    for f in formats:
      lookup({f: f for f in DATE_FORMATS}, f, "date format")
    days = (LAST_DATE - FIRST_DATE).days + 1
    if num_val + num_test >= days:
      raise UserError(f"seq2seq.num_val={num_val} + seq2seq.num_test="
                      f"{num_test} held-out days leave none of the {days} "
                      "for training.")

  def __init__(self, seed: int, num_val: int = 1000, num_test: int = 2000,
               locales: Sequence[str] = DATE_LOCALES,
               formats: Sequence[str] = DATE_FORMATS,
               max_source_len: int = 48):
    self.check_args(locales, formats, num_val, num_test)
    self.seed, self.locales, self.formats = seed, tuple(locales), tuple(formats)
    days = (LAST_DATE - FIRST_DATE).days + 1
    order = _rng(seed, 0).permutation(days)
    self._split_days = {"test": order[:num_test],
                        "val": order[num_test:num_test + num_val],
                        "train": order[num_test + num_val:]}
    self.max_source_len = max_source_len
    self.max_target_len = 11  # YYYY-MM-DD + EOS

  def chars(self) -> str:
    """Every character any rendering can use: all months and weekdays in
    every locale and format, digits, and the locale prefixes."""
    chars = set("0123456789-_ ")
    for loc in self.locales:
      chars |= set(loc)
      for month in range(1, 13):
        for day in range(1, 8):  # 7 consecutive days: every weekday
          date = datetime.date(2001, month, day)
          for fmt in self.formats:
            chars |= set(render_date(date, loc, fmt))
    return "".join(sorted(chars))

  def _draw(self, rng, days) -> tuple[datetime.date, str, str]:
    date = FIRST_DATE + datetime.timedelta(days=int(rng.choice(days)))
    locale = self.locales[rng.integers(len(self.locales))]
    fmt = self.formats[rng.integers(len(self.formats))]
    return date, locale, fmt

  def _example(self, rng, days) -> tuple[str, str]:
    return self._render(self._draw(rng, days))

  @staticmethod
  def _render(drawn) -> tuple[str, str]:
    date, locale, fmt = drawn
    return render_date(date, locale, fmt), date.isoformat()

  def train_examples(self, n: int, step: int, rows: slice | None = None
                     ) -> list[tuple[str, str]]:
    """As Addition.train_examples: all n drawn, `rows` of them rendered."""
    rng = _rng(self.seed, 1, step)
    drawn = [self._draw(rng, self._split_days["train"]) for _ in range(n)]
    return [self._render(d) for d in drawn[rows or slice(None)]]

  def eval_examples(self, split: str) -> list[tuple[str, str]]:
    rng = _rng(self.seed, 2, ("val", "test").index(split))
    days = self._split_days[split]
    # Each held-out date once, in a random locale and format.
    return [self._example(rng, [d]) for d in days]

  def split_dates(self, split: str) -> set[datetime.date]:
    return {FIRST_DATE + datetime.timedelta(days=int(d))
            for d in self._split_days[split]}


# --- number words ----------------------------------------------------------

# num2words languages whose words for 0..10**6 are plain strings; the test
# keeps this list honest.
NUMBER_LANGUAGES = ("de", "en", "es", "fr", "it", "nl", "pt")


def number_words(value: int, language: str) -> str:
  from num2words import num2words  # pylint: disable=g-import-not-at-top
  return num2words(value, lang=language)


class NumberWords:
  """A number in words in `source_language` -> in `target_language`, for
  the values 0 <= v < max_value (num2words' cardinals)."""

  @staticmethod
  def check_args(source_language: str, target_language: str,
                 max_value: int, num_val: int, num_test: int) -> None:
    """UserError for arguments the constructor cannot honour."""
    for key, language in (("source_language", source_language),
                          ("target_language", target_language)):
      lookup({l: l for l in NUMBER_LANGUAGES}, language, f"seq2seq.{key}")
    if source_language == target_language:
      raise UserError(f"seq2seq.source_language and target_language are "
                      f"both {source_language!r}: nothing to translate.")
    if not 100 <= max_value <= 10**6:
      raise UserError(f"seq2seq.max_value={max_value} must be in [100, "
                      "1000000] (every value is written out once, at about "
                      "20 us each).")
    if num_val + num_test > max_value // 2:
      raise UserError(f"Too many held-out values (seq2seq.num_val={num_val} "
                      f"+ seq2seq.num_test={num_test}) for max_value="
                      f"{max_value}: at most half of them.")

  def __init__(self, seed: int, source_language: str = "fr",
               target_language: str = "en", max_value: int = 10000,
               num_val: int = 500, num_test: int = 1000):
    self.check_args(source_language, target_language, max_value, num_val,
                    num_test)
    self.seed = seed
    self.words = {lang: [number_words(v, lang) for v in range(max_value)]
                  for lang in (source_language, target_language)}
    self.source, self.target = (self.words[source_language],
                                self.words[target_language])
    order = _rng(seed, 0).permutation(max_value)
    self._split_values = {
        "test": np.sort(order[:num_test]),
        "val": np.sort(order[num_test:num_test + num_val]),
        "train": order[num_test + num_val:]}
    self.max_source_len = max(map(len, self.source))
    self.max_target_len = max(map(len, self.target)) + 1  # + EOS

  def chars(self) -> str:
    return "".join(sorted(set("".join(self.source + self.target))))

  def _pair(self, value) -> tuple[str, str]:
    return self.source[int(value)], self.target[int(value)]

  def train_examples(self, n: int, step: int, rows: slice | None = None
                     ) -> list[tuple[str, str]]:
    """As Addition.train_examples: n values drawn, `rows` of them."""
    values = _rng(self.seed, 1, step).choice(self._split_values["train"], n)
    return [self._pair(v) for v in values[rows or slice(None)]]

  def eval_examples(self, split: str) -> list[tuple[str, str]]:
    return [self._pair(v) for v in self._split_values[split]]

  def split_values(self, split: str) -> set[int]:
    return {int(v) for v in self._split_values[split]}


PROBLEMS: dict[str, Callable[..., object]] = {
    "addition": Addition,
    "dates": Dates,
    "numbers": NumberWords,
}


def encode_pairs(vocab: Seq2SeqVocab, pairs, max_source_len: int,
                 max_target_len: int) -> dict[str, np.ndarray]:
  """(source, target) strings -> a padded batch:

  source [N, S], source_len [N], decoder_input [N, T] (BOS + target),
  target [N, T] (target + EOS), target_mask [N, T].
  """
  src = np.stack([vocab.encode(s, max_source_len) for s, _ in pairs])
  tgt = np.stack([vocab.encode(t, max_target_len, eos=True)
                  for _, t in pairs])
  dec_in = np.stack([vocab.encode(t, max_target_len + 1, bos=True)[:-1]
                     for _, t in pairs])
  return {"source": src, "source_len": (src != PAD).sum(1).astype(np.int32),
          "decoder_input": dec_in, "target": tgt,
          "target_mask": (tgt != PAD).astype(np.float32)}
