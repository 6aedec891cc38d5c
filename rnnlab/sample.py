"""Text generation from a trained language model's workdir (the command).

    python -m rnnlab.sample --workdir=runs/gru --prime="ROMEO:" \
        --length=1000 --temperature=0.8 --seed=0 [--top_k=5] [--batch_size=4] \
        [--backend=auto|native|jax]

--length is capped at MAX_LENGTH (100,000) and --batch_size at
MAX_BATCH_SIZE (256); --max_length and --max_batch_size raise the caps.
Generation itself, its backends and its seeding: `rnnlab.sampling`.
"""
from __future__ import annotations

import pathlib
import sys

from absl import flags

from rnnlab import cli
from rnnlab import sampling
from rnnlab.errors import UserError

# The command's limits (--max_length, --max_batch_size raise them): a typo
# like --length=10000000 would otherwise allocate batch x length x
# vocabulary float32 logits (GBs) before writing anything.
MAX_LENGTH = 100_000
MAX_BATCH_SIZE = 256


def main(argv):
  del argv
  f = flags.FLAGS
  for name, limit in (("length", f.max_length),
                      ("batch_size", f.max_batch_size)):
    if f[name].value > limit:
      raise UserError(
          f"--{name}={f[name].value} is above the limit of {limit} "
          f"(--max_{name}; the logits kept grow as batch x length x "
          "vocabulary). Raise --max_{name} to allow it.")
  run = sampling.load_run_for_inference(pathlib.Path(f.workdir))
  texts = sampling.sample_text(
      run.model, run.params, run.vocab, f.prime, f.length, seed=f.seed,
      temperature=f.temperature, top_k=f.top_k, batch_size=f.batch_size,
      backend=f.backend)
  for i, text in enumerate(texts):
    if len(texts) > 1:
      sys.stdout.write(f"--- sample {i} ---\n")
    sys.stdout.write(f.prime + text + "\n")


def _define_flags():
  flags.DEFINE_string("workdir", None, "Run directory with a checkpoint.",
                      required=True)
  flags.DEFINE_string("prime", "\n", "Text to start from.")
  flags.DEFINE_integer("length", 1000, "Characters to generate.")
  flags.DEFINE_float("temperature", 0.8, "Softmax temperature; 0 = argmax.")
  flags.DEFINE_integer("top_k", 0, "Sample from the k likeliest; 0 = all.")
  flags.DEFINE_integer("seed", 0, "Random seed.")
  flags.DEFINE_integer("batch_size", 1, "Independent samples to draw.")
  flags.DEFINE_integer("max_length", MAX_LENGTH, "Largest --length accepted.")
  flags.DEFINE_integer("max_batch_size", MAX_BATCH_SIZE,
                       "Largest --batch_size accepted.")
  flags.DEFINE_enum("backend", "auto", sampling.BACKENDS,
                    "auto: the faster of the two at this batch size "
                    "(timed once, cached), where native covers the model; "
                    "else jax (the jitted scan).")


def run():
  cli.run_command(_define_flags, main)


if __name__ == "__main__":
  run()
