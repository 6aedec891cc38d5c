"""Fingerprints of the compiled training step, to show that a change leaves
the fast path's program untouched.

  python -m benchmarks.program_fingerprint            # in each of two checkouts
  python -m benchmarks.program_fingerprint --dump=/tmp/hlo   # also the texts

For each cell and shape it compiles rnnlab's `train_step` exactly as
benchmarks/train_throughput.py does and hashes XLA's optimised HLO with
source locations (file names, line numbers, op metadata) removed and
instruction names renumbered (they follow Python function names). Equal
fingerprints mean XLA runs the same program, so the speed is the same by
construction; timing runs on this machine vary by ±10-20%.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import pathlib
import re

from benchmarks import harness
from benchmarks import train_throughput


def program_text(cell: str, shape: harness.Shape) -> str:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from rnnlab import models, train  # pylint: disable=g-import-not-at-top
  from rnnlab.tasks import char_lm  # pylint: disable=g-import-not-at-top
  c = train_throughput.rnnlab_config(cell, shape)
  model = models.create_model(c.model, vocab_size=shape.vocab)
  state, schedule = train.create_train_state(
      model, (jnp.zeros((1, shape.seq_len), jnp.int32),), c)
  step = train.make_train_step(functools.partial(char_lm.lm_loss, model),
                               schedule)
  tokens = jnp.zeros((shape.batch, shape.seq_len), jnp.int32)
  text = step.lower(state, {"inputs": tokens, "targets": tokens},
                    jax.random.key(0)).compile().as_text()
  text = re.sub(r", metadata=\{[^}]*\}", "", text)
  # The stack-frame tables at the end: file names, functions, lines.
  text = "\n".join(line for line in text.splitlines()
                   if not re.match(r'^\d+ ("|\{|[A-Za-z_<>.]+$)', line))
  # Instruction names come from Python function names (name scopes):
  # number them in order of appearance instead.
  names = {}
  return re.sub(r"%[\w.\-]+",
                lambda m: names.setdefault(m.group(0), f"%v{len(names)}"),
                text)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--cells", default="rnn,lstm,gru")
  p.add_argument("--shapes", default="ref,h512,h1024")
  p.add_argument("--dump", default="", help="Write each program here.")
  args = p.parse_args(argv)
  from rnnlab import cli  # pylint: disable=g-import-not-at-top
  cli.setup()
  for shape_name in args.shapes.split(","):
    for cell in args.cells.split(","):
      text = program_text(cell, harness.SHAPES[shape_name])
      if args.dump:
        path = pathlib.Path(args.dump)
        path.mkdir(parents=True, exist_ok=True)
        (path / f"{cell}_{shape_name}.hlo").write_text(text)
      digest = hashlib.sha256(text.encode()).hexdigest()[:16]
      print(f"{cell:5s} {shape_name:6s} {digest}", flush=True)


if __name__ == "__main__":
  main()
