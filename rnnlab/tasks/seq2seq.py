"""Sequence-to-sequence tasks (`rnnlab.data.seq2seq`).

Config keys: the seq2seq section (problem "addition" | "dates" |
"numbers" and its keys, attention, beam_size, attention_plots), model.* (the encoder-decoder
of `models/seq2seq.py`, model.name = "seq2seq"), train.batch_size,
eval.batch_size.

Metrics: teacher-forced loss (nats per target token, EOS included) and
exact-match accuracy of greedy decoding (and of beam search when
seq2seq.beam_size > 1) over the whole split; for translations ("numbers")
also corpus BLEU and chrF (`rnnlab.translation_metrics`).
"""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rnnlab import decode
from rnnlab import metrics as metrics_lib
from rnnlab import rundir
from rnnlab import translation_metrics
from rnnlab.data import seq2seq as data
from rnnlab.errors import UserError
from rnnlab.registry import lookup
from rnnlab.tasks import base

VOCAB_FILE = "vocab.json"


def make_problem(config):
  d = config.seq2seq
  cls = lookup(data.PROBLEMS, d.problem, "seq2seq problem")
  if cls is data.Addition:
    return cls(config.seed, max_digits=d.max_digits, num_val=d.num_val,
               num_test=d.num_test)
  if cls is data.NumberWords:
    return cls(config.seed, d.source_language, d.target_language,
               max_value=d.max_value, num_val=d.num_val, num_test=d.num_test)
  return cls(config.seed, num_val=d.num_val, num_test=d.num_test,
             locales=tuple(d.locales), formats=tuple(d.formats),
             max_source_len=d.max_source_len)


def is_translation(config) -> bool:
  """Whether the problem's outputs are natural-language text, scored with
  BLEU and chrF besides exact match."""
  return config.seq2seq.problem == "numbers"


def seq2seq_loss(model, params, batch, rng, train=True):
  """Mean cross-entropy per target token (EOS included, PAD excluded)."""
  logits, _ = model.apply({"params": params}, batch["source"],
                          batch["source_len"], batch["decoder_input"],
                          train=train, rngs={"dropout": rng})
  nll = optax.softmax_cross_entropy_with_integer_labels(logits,
                                                        batch["target"])
  mask = batch["target_mask"]
  correct = (jnp.argmax(logits, -1) == batch["target"]) * mask
  loss = jnp.sum(nll * mask) / jnp.sum(mask)
  return loss, {"token_accuracy": jnp.sum(correct) / jnp.sum(mask)}


class Seq2SeqTask(base.Task):

  models = ("seq2seq",)
  objective = ("val/accuracy", "max")  # exact match of greedy decoding

  @classmethod
  def check_config(cls, config):
    d = config.seq2seq
    if d.problem == "addition":
      data.Addition.check_args(d.max_digits, d.num_val, d.num_test)
    elif d.problem == "dates":
      data.Dates.check_args(d.locales, d.formats, d.num_val, d.num_test)
    elif d.problem == "numbers":
      data.NumberWords.check_args(d.source_language, d.target_language,
                                  d.max_value, d.num_val, d.num_test)

  def __init__(self, config):
    self.config = config
    self.problem = make_problem(config)
    self.vocab = data.Seq2SeqVocab(self.problem.chars())
    self.model = self.create_model(vocab_size=len(self.vocab),
                                     attention=config.seq2seq.attention)
    self._eval = {}

  def _encode(self, pairs):
    return data.encode_pairs(self.vocab, pairs, self.problem.max_source_len,
                             self.problem.max_target_len)

  def init_inputs(self):
    b = self._encode(self.problem.train_examples(1, 0))
    return (b["source"], b["source_len"], b["decoder_input"])

  def tokens_per_batch(self):
    return self.config.train.batch_size * self.problem.max_target_len

  def train_batch(self, step, rows=None):
    return self._encode(self.problem.train_examples(
        self.config.train.batch_size, step, rows))

  def loss_fn(self, params, batch, rng):
    return seq2seq_loss(self.model, params, batch, rng)

  @property
  def eval_splits(self):
    return ("val", "test")

  def eval_pairs(self, split):
    if split not in self.eval_splits:
      raise UserError(f"Unknown split {split!r}. Valid choices: "
                      f"{', '.join(self.eval_splits)}.")
    if split not in self._eval:
      pairs = self.problem.eval_examples(split)
      self._eval[split] = (pairs, self._encode(pairs))
    return self._eval[split]

  def predict(self, params, batch, beam_size: int = 1):
    """Decoded strings for an encoded batch."""
    max_len = self.problem.max_target_len
    if beam_size > 1:
      tokens, _ = decode.beam_search(self.model, params, batch["source"],
                                     batch["source_len"], max_len, beam_size)
    else:
      tokens, _ = decode.greedy(self.model, params, batch["source"],
                                batch["source_len"], max_len)
    return decode.decode_text(self.vocab, tokens)

  def evaluate(self, params, split):
    pairs, encoded = self.eval_pairs(split)
    size = self.config.eval.batch_size
    beam_size = self.config.seq2seq.beam_size
    beams = (1,) + ((beam_size,) if beam_size > 1 else ())
    outputs = {b: [] for b in beams}
    loss_sum = tokens = 0.0
    for start in range(0, len(pairs), size):
      batch = {k: v[start:start + size] for k, v in encoded.items()}
      loss, _ = _eval_loss(self.model, params, batch)
      count = float(batch["target_mask"].sum())
      loss_sum, tokens = loss_sum + float(loss) * count, tokens + count
      for b in beams:
        outputs[b] += self.predict(params, batch, b)
    targets = [t for _, t in pairs]
    metrics = {"loss": loss_sum / tokens, "examples": len(pairs)}
    for b in beams:
      prefix = f"beam{b}_" if b > 1 else ""
      metrics[prefix + "accuracy"] = sum(
          p == t for p, t in zip(outputs[b], targets)) / len(pairs)
      if is_translation(self.config):
        scores = translation_metrics.score(outputs[b], targets)
        metrics[prefix + "bleu"] = scores["bleu"]
        metrics[prefix + "chrf"] = scores["chrf"]
    return metrics

  def copy_baseline(self, split: str) -> dict[str, float]:
    """BLEU, chrF and exact match of answering with the input itself: what
    a translation gets for words the two languages share."""
    pairs, _ = self.eval_pairs(split)
    return translation_metrics.score([s for s, _ in pairs],
                                     [t for _, t in pairs])

  def save_metadata(self, workdir):
    # Process 0 writes it (a resumed run keeps it); every process checks it.
    path = pathlib.Path(workdir) / VOCAB_FILE
    if metrics_lib.run_file(path, self.vocab.save,
                            data.Seq2SeqVocab.load) != self.vocab:
      raise UserError(f"{path} does not match this task's vocabulary; use "
                      "a new workdir.")

  def write_reports(self, params, workdir):
    """Attention heatmaps of the first seq2seq.attention_plots test examples:
    <workdir>/attention/test_<i>.png."""
    if self.config.seq2seq.attention == "none" or not (
        self.config.seq2seq.attention_plots):
      return []
    directory = pathlib.Path(workdir) / "attention"
    directory.mkdir(exist_ok=True)
    return [metrics_lib.plot_attention(directory / f"test_{i}.png", source,
                                       prediction, weights)
            for i, (source, prediction, weights) in enumerate(attention_maps(
                self, params, "test", self.config.seq2seq.attention_plots))]

  def periodic_output(self, params, step):
    pairs, encoded = self.eval_pairs("val")
    batch = {k: v[:4] for k, v in encoded.items()}
    predictions = self.predict(params, batch)
    return "\n".join(f"{s!r} -> {p!r} (target {t!r})"
                     for (s, t), p in zip(pairs[:4], predictions))


@jax.jit(static_argnums=0)
def _eval_loss(model, params, batch):
  return seq2seq_loss(model, params, batch, jax.random.key(0), train=False)


def attention_maps(task: Seq2SeqTask, params, split: str = "test",
                   num: int = 4):
  """(source, prediction, weights [L, S]) of the first `num` examples."""
  pairs, encoded = task.eval_pairs(split)
  batch = {k: v[:num] for k, v in encoded.items()}
  tokens, weights = decode.greedy(task.model, params, batch["source"],
                                  batch["source_len"],
                                  task.problem.max_target_len)
  out = []
  for i, (source, _) in enumerate(pairs[:num]):
    prediction = task.vocab.decode(tokens[i])
    out.append((source, prediction,
                np.asarray(weights[i, :len(prediction) + 1, :len(source)])))
  return out


# -- Decoding new input with a trained run. ----------------------------------


@dataclasses.dataclass
class Translator:
  """A trained seq2seq run, ready to decode new input."""
  task: Seq2SeqTask
  params: Any
  step: int
  checkpoint: str  # "best" (chosen on validation) or "latest"

  def _sources(self, texts: list[str]) -> dict[str, np.ndarray]:
    empty = [i for i, t in enumerate(texts) if not t]
    if empty:
      raise UserError(f"Input {empty[0]} is empty: nothing to translate.")
    length = max(map(len, texts))
    source = np.stack([self.task.vocab.encode(t, length) for t in texts])
    return {"source": source,
            "source_len": (source != data.PAD).sum(1).astype(np.int32)}

  def translate(self, texts: list[str], beam_size: int = 1) -> list[str]:
    return self.task.predict(self.params, self._sources(texts), beam_size)

  def plot_attention(self, text: str, path) -> pathlib.Path:
    """The heatmap of `text`'s greedy decoding, written to `path`."""
    if self.task.config.seq2seq.attention == "none":
      raise UserError("This run has no attention (seq2seq.attention="
                      "'none'): there is no heatmap to draw.")
    batch = self._sources([text])
    tokens, weights = decode.greedy(self.task.model, self.params,
                                    batch["source"], batch["source_len"],
                                    self.task.problem.max_target_len)
    prediction = self.task.vocab.decode(tokens[0])
    return metrics_lib.plot_attention(
        pathlib.Path(path), text, prediction,
        np.asarray(weights[0, :len(prediction) + 1, :len(text)]))


def load_translator(workdir, checkpoint_name: str = "best") -> Translator:
  """The seq2seq run in `workdir`, for decoding: its config, its saved
  vocabulary (vocab.json, checked against the problem's) and the
  parameters of its best checkpoint (chosen on validation; the newest if
  it has none yet) or, with "latest", of its newest."""
  rundir.check_checkpoint_choice(checkpoint_name)
  workdir = pathlib.Path(workdir)
  config, _ = rundir.load_task_run(workdir, "seq2seq", "decoding",
                                   VOCAB_FILE)
  task = Seq2SeqTask(config)
  if data.Seq2SeqVocab.load(workdir / VOCAB_FILE) != task.vocab:
    raise UserError(f"{workdir / VOCAB_FILE} does not match the run's "
                    "problem: was the config or the data changed?")
  step, params, checkpoint_name = rundir.restore_chosen_params(
      task.model, task.init_inputs(), workdir, checkpoint_name)
  return Translator(task, params, step, checkpoint_name)
