"""Sampling throughput: rnnlab's jit-compiled scan vs a per-character loop.

  python benchmarks/sample_throughput.py [--workdir=runs/gru] [--length=1024]

rnnlab: `rnnlab.sample.generate`, one jit-compiled `lax.scan` that draws and
feeds back one character per step. The peer is the chapter's method written
in PyTorch: a Python loop that calls the model once per character (eager,
`torch.no_grad`, softmax with temperature + `torch.multinomial`).

Both use the same architecture (the workdir's config, else the default GRU
config: 2 x 256 GRU, embedding 64, vocabulary 65) at batch 1 and batch 64.
Speed does not depend on the weights, so without --workdir the parameters
are freshly initialised. Figures are medians of --repeats timed runs after a
warm-up (which includes compilation for rnnlab).
"""
from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import time

import numpy as np

from benchmarks import harness


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--workdir", default="", help="Trained rnnlab run directory.")
  p.add_argument("--length", type=int, default=1024)
  p.add_argument("--batches", default="1,64")
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--temperature", type=float, default=0.8)
  p.add_argument("--threads", type=int, default=2)
  return p.parse_args(argv)


def load_rnnlab(workdir: str):
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from rnnlab import base_config, models, train  # pylint: disable=g-import-not-at-top
  if workdir:
    run = train.load_run_for_inference(pathlib.Path(workdir))
    return run.config, run.model, run.params, len(run.vocab)
  config = base_config.get_config()
  vocab = harness.VOCAB
  model = models.create_model(config.model, vocab_size=vocab)
  params = model.init(jax.random.key(0), jnp.zeros((1, 1), jnp.int32))
  return config, model, params["params"], vocab


def time_rnnlab(model, params, batch, length, temperature, repeats):
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from rnnlab import sample  # pylint: disable=g-import-not-at-top
  prime = jnp.zeros((batch, 1), jnp.int32)

  def run(seed):
    tokens, _ = sample.generate(model, params, prime, jax.random.key(seed),
                                length=length, temperature=temperature)
    tokens.block_until_ready()

  run(0)  # compile
  return [harness.timed(lambda: run(r + 1)) for r in range(repeats)]


class TorchCharLoop:
  """The chapter's sampler: one model call per character in Python."""

  def __init__(self, config, vocab: int, threads: int):
    import torch  # pylint: disable=g-import-not-at-top
    from torch import nn  # pylint: disable=g-import-not-at-top
    torch.set_num_threads(threads)
    m = config.model
    rnn_cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[m.cell]
    self.torch = torch
    self.embed = nn.Embedding(vocab, m.embed_dim)
    self.rnn = rnn_cls(m.embed_dim, m.hidden_size, num_layers=m.num_layers,
                       batch_first=True)
    self.out = nn.Linear(m.hidden_size, vocab)

  def run(self, batch: int, length: int, temperature: float, seed: int):
    torch = self.torch
    gen = torch.Generator().manual_seed(seed)
    x = torch.zeros((batch, 1), dtype=torch.long)
    state, chars = None, []
    with torch.no_grad():
      for _ in range(length):
        h, state = self.rnn(self.embed(x), state)
        probs = torch.softmax(self.out(h[:, -1]) / temperature, dim=-1)
        x = torch.multinomial(probs, 1, generator=gen)
        chars.append(x)
    return torch.cat(chars, dim=1)


def main(argv=None):
  args = parse_args(argv)
  from rnnlab import cli  # pylint: disable=g-import-not-at-top
  cli.setup()
  import jax  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  config, model, params, vocab = load_rnnlab(args.workdir)
  peer = TorchCharLoop(config, vocab, args.threads)
  m = config.model
  print(f"# {time.strftime('%Y-%m-%d %H:%M')} | {harness.machine()} | "
        f"jax {jax.__version__} | torch {torch.__version__} "
        f"({args.threads} threads) | python {sys.version.split()[0]}")
  print(f"# model: {m.num_layers} x {m.hidden_size} {m.cell}, embedding "
        f"{m.embed_dim}, vocabulary {vocab}; {args.length} characters per "
        f"sequence; {'trained: ' + args.workdir if args.workdir else 'fresh parameters'}")
  print("| batch | rnnlab chars/s | chapter loop (PyTorch) chars/s | ratio |")
  print("|---|---|---|---|")
  for batch in (int(b) for b in args.batches.split(",")):
    ours = time_rnnlab(model, params, batch, args.length, args.temperature,
                       args.repeats)
    peer.run(batch, 8, args.temperature, 0)  # warm-up
    theirs = [harness.timed(lambda r=r: peer.run(
        batch, args.length, args.temperature, r)) for r in range(args.repeats)]
    ours_cps = batch * args.length / statistics.median(ours)
    theirs_cps = batch * args.length / statistics.median(theirs)
    print(f"| {batch} | {ours_cps:,.0f} | {theirs_cps:,.0f} | "
          f"{ours_cps / theirs_cps:.1f}x |", flush=True)


if __name__ == "__main__":
  os.environ.setdefault("RNNLAB_OFFLINE", "1")
  np.set_printoptions(precision=3)
  main()
