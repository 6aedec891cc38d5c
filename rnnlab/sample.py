"""Text generation from a character LM, as one jit-compiled scan.

    python -m rnnlab.sample --workdir=runs/gru --prime="ROMEO:" \
        --length=1000 --temperature=0.8 --seed=0 [--top_k=5] [--batch_size=4]

The prime is run through the model in one call; then `lax.scan` draws one
token per step and feeds it back, carrying the recurrent state (one step of
each layer per token, `RecurrentLM.step`). The draw at step i uses the i-th
of `step_seeds(rng, length)`, so the text is a pure function of the seed.
"""
from __future__ import annotations

import functools
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab import hashrng

from rnnlab.errors import CheckpointError, UserError

Array = jax.Array


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
  gumbel = -jnp.log(-jnp.log(hashrng.uniform(seed, logits.shape)))
  drawn = jnp.argmax(logits / jnp.maximum(temperature, 1e-6) + gumbel,
                     axis=-1)
  return jnp.where(temperature > 0, drawn, greedy).astype(jnp.int32)


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


def sample_text(model, params, vocab, prime: str, length: int, seed: int = 0,
                temperature: float = 1.0, top_k: int = 0,
                batch_size: int = 1) -> list[str]:
  """Generates `batch_size` continuations of `prime` (prime not included)."""
  if not prime:
    raise UserError("The prime must hold at least one character.")
  if top_k < 0 or top_k > len(vocab):
    raise UserError(f"top_k={top_k} must be in [0, {len(vocab)}] (0 = off).")
  if not temperature >= 0:  # also NaN
    raise UserError(f"temperature={temperature} must be >= 0.")
  if length < 1:
    raise UserError(f"length={length} must be >= 1.")
  if batch_size < 1:
    raise UserError(f"batch_size={batch_size} must be >= 1.")
  ids = vocab.encode(prime)  # names characters outside the vocabulary
  prime_ids = jnp.broadcast_to(jnp.asarray(ids)[None], (batch_size, len(ids)))
  tokens, _ = generate(model, params, prime_ids, jax.random.key(seed),
                       length=length, temperature=temperature, top_k=top_k)
  return [vocab.decode(row) for row in np.asarray(tokens)]


def checkpoint_vocab_size(workdir: pathlib.Path) -> tuple[int, int] | None:
  """(step, rows of the readout) of the newest checkpoint in `workdir`,
  read from Orbax's metadata without restoring; None if unreadable."""
  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp
  from rnnlab import checkpoint
  from rnnlab import train
  try:
    ckpt_dir = pathlib.Path(workdir) / train.CHECKPOINT_DIR
    step = checkpoint.Checkpointer(ckpt_dir, read_only=True).latest_step()
    with ocp.StandardCheckpointer() as reader:
      meta = reader.metadata(ckpt_dir / str(step) / "params")
    return step, int(meta.item_metadata.tree["readout"]["bias"].shape[0])
  except Exception:  # pylint: disable=broad-except
    return None  # only a diagnosis: the caller's error stands


def load_run(workdir: pathlib.Path):
  """`train.load_run_for_inference`, naming a vocabulary file that does not
  belong to the checkpoint (Orbax would only report a shape mismatch)."""
  from rnnlab import train  # pylint: disable=g-import-not-at-top
  from rnnlab.data import text  # pylint: disable=g-import-not-at-top
  from rnnlab.tasks import char_lm  # pylint: disable=g-import-not-at-top
  workdir = pathlib.Path(workdir)
  try:
    return train.load_run_for_inference(workdir)
  except CheckpointError:
    found = checkpoint_vocab_size(workdir)
    vocab_path = workdir / char_lm.VOCAB_FILE
    if found is not None and vocab_path.exists():
      step, rows = found
      size = len(text.load_vocab(vocab_path))
      if size != rows:
        raise CheckpointError(
            f"{vocab_path} holds {size} tokens, but the checkpoint at step "
            f"{step} was trained on a vocabulary of {rows} (its readout has "
            f"{rows} rows): this vocabulary file does not belong to the "
            "checkpoint. Restore the run's own vocab.json.") from None
    raise


def main(argv):
  del argv
  from absl import flags  # pylint: disable=g-import-not-at-top
  f = flags.FLAGS
  run = load_run(pathlib.Path(f.workdir))
  texts = sample_text(run.model, run.params, run.vocab, f.prime, f.length,
                      seed=f.seed, temperature=f.temperature, top_k=f.top_k,
                      batch_size=f.batch_size)
  for i, text in enumerate(texts):
    if len(texts) > 1:
      sys.stdout.write(f"--- sample {i} ---\n")
    sys.stdout.write(f.prime + text + "\n")


def _define_flags():
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("workdir", None, "Run directory with a checkpoint.",
                      required=True)
  flags.DEFINE_string("prime", "\n", "Text to start from.")
  flags.DEFINE_integer("length", 1000, "Characters to generate.")
  flags.DEFINE_float("temperature", 0.8, "Softmax temperature; 0 = argmax.")
  flags.DEFINE_integer("top_k", 0, "Sample from the k likeliest; 0 = all.")
  flags.DEFINE_integer("seed", 0, "Random seed.")
  flags.DEFINE_integer("batch_size", 1, "Independent samples to draw.")


def run():
  from rnnlab import cli  # pylint: disable=g-import-not-at-top
  cli.run_command(_define_flags, main)


if __name__ == "__main__":
  run()
