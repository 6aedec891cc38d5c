"""Text generation from a language model: the library under the
`python -m rnnlab.sample` command.

The prime is run through the model in one call; then each step draws one
token and feeds it back, carrying the recurrent state. The draw at step i
uses the i-th of `step_seeds(rng, length)`, so the text is a pure function
of the seed. Two backends compute the same draws:

  jax     `generate`: one jit-compiled `lax.scan`, one step of each layer
          per token (`RecurrentLM.step`). Any model, any device.
  native  `rnnlab.native`: a C kernel that runs the whole loop on the CPU
          with each layer's weights split over the cores (~5x the scan's
          speed at batch 1, docs/benchmarks.md). Plain float32 RecurrentLMs.
  auto    at each batch size, the faster of the two where native covers
          the model (timed once per machine, model shape and batch size,
          then cached: `rnnlab.native.autotune`); jax elsewhere.

    run = sampling.load_run_for_inference("runs/gru")
    texts = sampling.sample_text(run.model, run.params, run.vocab, "ROMEO:",
                                 200, seed=0, temperature=0.8)
"""
from __future__ import annotations

import dataclasses
import functools
import pathlib
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from rnnlab import checkpoint
from rnnlab import hashrng
from rnnlab import models
from rnnlab import rundir
from rnnlab.data import text
from rnnlab.errors import CheckpointError, UserError
from rnnlab.native import autotune
from rnnlab.native import build as native_build
from rnnlab.native import sampler as native_sampler
from rnnlab.registry import lookup

Array = jax.Array
BACKENDS = ("auto", "native", "jax")
# Largest batch "auto"'s fixed rule (RNNLAB_AUTOTUNE=0) gives the native
# kernel. Measured 2026-11-26 on the Xeon (2 x 256 GRU, chars/s native vs
# jax: batch 2 73k vs 31k, 4 65k vs 59k, 8 60k vs 78k, 64 88k vs 102k),
# when the kernel read the weights once per row. From batch 4 it now
# multiplies all rows in register tiles: 2026-12-08 on a Zen 3 (AVX2),
# batch 8 71-76k vs 35k, 64 94-95k vs 54-63k. Not yet measured on
# AVX-512, so the rule stays; with timing on, "auto" measures instead.
NATIVE_MAX_BATCH = 4
TIMING_LENGTH = 128  # characters per timed call when "auto" measures


def step_seeds(rng: Array, length: int) -> Array:
  """One uint32 seed pair per generated position: [length, 2]."""
  return hashrng.seeds(rng, (length,))


def next_token(logits: Array, seed: Array, temperature, top_k: int = 0):
  """Draws ids [B] from logits [B, V]; temperature 0 means argmax.

  Gumbel-max: argmax(logits / T + g), g = -log(-log(u)), the same rule as
  `jax.random.categorical`, with u from `hashrng` (seed: a uint32 pair)
  because threefry inside the generation loop cost half of each step.
  """
  if top_k > 0:
    kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
    logits = jnp.where(logits < kth, -jnp.inf, logits)
  greedy = jnp.argmax(logits, axis=-1)
  drawn = jnp.argmax(logits / jnp.maximum(temperature, 1e-6) +
                     gumbel_noise(seed, logits.shape), axis=-1)
  return jnp.where(temperature > 0, drawn, greedy).astype(jnp.int32)


def gumbel_noise(seed: Array, shape: tuple[int, ...]) -> Array:
  """Standard Gumbel noise -log(-log(u)) for one draw: `shape` [B, V]."""
  return -jnp.log(-jnp.log(hashrng.uniform(seed, shape)))


@functools.partial(jax.jit, static_argnames=("model", "length", "top_k"))
def generate(model, params, prime: Array, rng: Array, *, length: int,
             temperature=1.0, top_k: int = 0):
  """prime ids [B, P] (P >= 1) -> (ids [B, length], logits [B, length, V]).

  logits[:, i] is the distribution ids[:, i] was drawn from.
  """
  variables = {"params": params}
  logits, carry = model.apply(variables, prime)
  temperature = jnp.asarray(temperature, jnp.float32)

  def step(state, seed):
    carry, last_logits = state
    token = next_token(last_logits, seed, temperature, top_k)
    logits, carry = model.apply(variables, token, carry, method="step")
    return (carry, logits), (token, last_logits)

  _, (tokens, step_logits) = jax.lax.scan(
      step, (carry, logits[:, -1]), step_seeds(rng, length))
  return tokens.T, step_logits.transpose(1, 0, 2)


@functools.partial(jax.jit, static_argnames=("model", "length"))
def _prime_and_noise(model, params, prime: Array, rng: Array, *, length: int):
  """The native backend's inputs: (logits after the prime [B, V], carries,
  Gumbel noise of every draw [length, B, V])."""
  logits, carries = model.apply({"params": params}, prime)
  shape = (logits.shape[0], logits.shape[-1])
  noise = jax.vmap(lambda s: gumbel_noise(s, shape))(step_seeds(rng, length))
  return logits[:, -1], carries, noise


class Sampler:
  """Draws continuations from one model's parameters on `backend`.

  `generate` has the signature and results of the function `generate`;
  the native kernel's weight layout is built once, here.
  """

  def __init__(self, model, params, backend: str = "auto",
               threads: int | None = None, isa: str | None = None):
    lookup({b: b for b in BACKENDS}, backend, "sampling backend")
    self.model, self.params, self.threads = model, params, threads
    # The native kernel's instruction-set variant (None: this CPU's best).
    self.isa = native_build.check_isa(isa) if isa else None
    self.backend = backend
    self.choices: dict[int, autotune.Choice] = {}  # "auto"'s, per batch
    self._native_reason = self._why_not_native()
    if backend == "native" and self._native_reason:
      raise UserError(f"--backend=native cannot run this model: "
                      f"{self._native_reason}. Use --backend=jax (or auto).")
    self._weights = None
    if backend != "jax" and not self._native_reason:
      table = model.apply({"params": params}, method="input_table")
      self._weights = native_sampler.Weights.from_model(model, params, table)

  def _why_not_native(self) -> str | None:
    if self.backend == "jax":
      return "the jax backend was chosen"
    if jax.default_backend() != "cpu" and self.backend == "auto":
      return f"the model runs on {jax.default_backend()}, not the CPU"
    reason = native_sampler.unsupported(self.model)
    if reason:
      return f"the native kernel does not cover {reason}"
    return native_sampler.available(self.isa)  # warns once if unbuildable

  def backend_for(self, batch_size: int) -> str:
    """The backend that draws a batch of `batch_size` rows."""
    if self._weights is None:
      return "jax"
    if self.backend == "native":
      return "native"
    if batch_size not in self.choices:
      self.choices[batch_size] = self._choose(batch_size)
    return self.choices[batch_size].choice

  def _choose(self, batch_size: int) -> autotune.Choice:
    if not autotune.timing_enabled():
      return autotune.Choice(
          "native" if batch_size <= NATIVE_MAX_BATCH else "jax", "rule")
    rnn = self.model.rnn
    fields = {"cell": rnn.cell, "cell_options": dict(rnn.cell_options or {}),
              "hidden": rnn.layer_sizes(), "embedding": self.model.embedding,
              "embed_dim": self.model.embed_dim,
              "vocab": self.model.vocab_size, "batch": batch_size,
              "threads": self.threads or native_build.cores(),
              "isa": self.isa or native_build.default_isa()}
    prime = jnp.zeros((batch_size, 1), jnp.int32)

    def runner(backend):
      def run(n):
        for i in range(n):
          jax.block_until_ready(self._generate_on(
              backend, prime, jax.random.key(i), length=TIMING_LENGTH,
              temperature=1.0, top_k=0))
      return run

    try:
      choice = autotune.choose(
          "sample", fields,
          lambda: {"jax": runner("jax"), "native": runner("native")},
          ["jax", "native"])
    except native_sampler.NativeUnavailable as e:  # e.g. OMP_THREAD_LIMIT
      logging.warning("Sampling with the jax backend: %s", e)
      return autotune.Choice("jax", "rule")
    logging.info("Sampling backend auto at batch %d: %s", batch_size,
                 choice.summary())
    return choice

  def generate(self, prime: Array, rng: Array, *, length: int,
               temperature=1.0, top_k: int = 0):
    """prime ids [B, P] -> (ids [B, length], logits [B, length, V])."""
    backend = self.backend_for(prime.shape[0])
    try:
      return self._generate_on(backend, prime, rng, length=length,
                               temperature=temperature, top_k=top_k)
    except native_sampler.NativeUnavailable as e:  # e.g. OMP_THREAD_LIMIT
      if self.backend != "auto":
        raise UserError(f"--backend=native failed: {e}") from e
      logging.warning("Sampling with the jax backend: %s", e)
      self._weights = None
      return self.generate(prime, rng, length=length,
                           temperature=temperature, top_k=top_k)

  def _generate_on(self, backend: str, prime: Array, rng: Array, *,
                   length: int, temperature, top_k: int):
    if backend == "jax":
      return generate(self.model, self.params, prime, rng, length=length,
                      temperature=temperature, top_k=top_k)
    logits, carries, noise = _prime_and_noise(
        self.model, self.params, prime, rng, length=length)
    return native_sampler.generate(
        self._weights, carries, np.asarray(logits), np.asarray(noise),
        temperature=temperature, top_k=top_k, threads=self.threads,
        isa=self.isa)


def check_options(vocab, prime: str, length: int, temperature: float = 1.0,
                  top_k: int = 0, batch_size: int = 1, prefix: str = ""
                  ) -> np.ndarray:
  """The prime's token ids, once every sampling option is valid for `vocab`;
  else UserError naming the first bad one as `prefix` + its name (e.g.
  "config.sample." when a training run checks its periodic samples before
  its first step)."""
  if not prime:
    raise UserError(f"{prefix}prime={prime!r} must hold at least one "
                    "character.")
  if top_k < 0 or top_k > len(vocab):
    raise UserError(f"{prefix}top_k={top_k} must be in [0, {len(vocab)}], "
                    "the vocabulary size (0 = off).")
  if not temperature >= 0:  # also NaN
    raise UserError(f"{prefix}temperature={temperature} must be >= 0.")
  if length < 1:
    raise UserError(f"{prefix}length={length} must be >= 1.")
  if batch_size < 1:
    raise UserError(f"batch_size={batch_size} must be >= 1.")
  try:
    ids = vocab.encode(prime)  # names characters outside the vocabulary
  except UserError as e:
    raise UserError(f"{prefix}prime={prime!r}: {e}") from None
  if not len(ids):  # e.g. only spaces, which word tokenisation drops
    raise UserError(f"{prefix}prime={prime!r} holds no token of the "
                    f"{type(vocab).__name__} (it needs a word, a punctuation "
                    "mark or a newline).")
  return ids


def sample_text(model, params, vocab, prime: str, length: int, seed: int = 0,
                temperature: float = 1.0, top_k: int = 0,
                batch_size: int = 1, backend: str = "auto") -> list[str]:
  """Generates `batch_size` continuations of `prime` (prime not included)."""
  ids = check_options(vocab, prime, length, temperature, top_k, batch_size)
  prime_ids = jnp.broadcast_to(jnp.asarray(ids)[None], (batch_size, len(ids)))
  sampler = Sampler(model, params, backend)
  tokens, _ = sampler.generate(prime_ids, jax.random.key(seed),
                               length=length, temperature=temperature,
                               top_k=top_k)
  return [vocab.decode(row) for row in np.asarray(tokens)]



@dataclasses.dataclass
class InferenceRun:
  """What evaluation and sampling need from a language model's workdir."""
  config: ml_collections.ConfigDict
  model: Any
  params: Any
  vocab: text.Vocab | text.WordVocab
  step: int


def load_run_for_inference(workdir: pathlib.Path) -> InferenceRun:
  """Loads config, vocabulary and the newest params of a char_lm or word_lm
  run in `workdir`.

  Reads only JSON (config, vocab) and Orbax arrays; the corpus is not
  needed. A vocabulary file that does not belong to the checkpoint is named
  as such (Orbax alone would only report a shape mismatch).
  """
  workdir = pathlib.Path(workdir)
  config = rundir.load_config(workdir)
  vocab_path = workdir / rundir.VOCAB_FILE
  if not vocab_path.exists():
    raise CheckpointError(f"No {rundir.VOCAB_FILE} in {workdir}.")
  vocab = text.load_vocab(vocab_path)
  model = models.create_model(config.model, vocab_size=len(vocab))
  try:
    step, params = rundir.restore_params(
        model, (jnp.zeros((1, 1), jnp.int32),), workdir)
  except CheckpointError:
    found = checkpoint_vocab_size(workdir)
    if found is not None and found[1] != len(vocab):
      step, rows = found
      raise CheckpointError(
          f"{vocab_path} holds {len(vocab)} tokens, but the checkpoint at "
          f"step {step} was trained on a vocabulary of {rows} (its readout "
          f"has {rows} rows): this vocabulary file does not belong to the "
          "checkpoint. Restore the run's own vocab.json.") from None
    raise
  return InferenceRun(config, model, params, vocab, step)


def checkpoint_vocab_size(workdir: pathlib.Path) -> tuple[int, int] | None:
  """(step, rows of the readout) of the newest checkpoint in `workdir`,
  read from Orbax's metadata without restoring; None if unreadable."""
  try:
    ckpt_dir = pathlib.Path(workdir) / rundir.CHECKPOINT_DIR
    step = checkpoint.Checkpointer(ckpt_dir, read_only=True).latest_step()
    with ocp.StandardCheckpointer() as reader:
      meta = reader.metadata(ckpt_dir / str(step) / "params")
    return step, int(meta.item_metadata.tree["readout"]["bias"].shape[0])
  except Exception:  # pylint: disable=broad-except
    return None  # only a diagnosis: the caller's error stands
