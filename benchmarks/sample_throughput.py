"""Sampling throughput: rnnlab's samplers vs a per-character loop.

  python -m benchmarks.sample_throughput [--workdir=runs/gru] [--length=1024]
  python -m benchmarks.sample_throughput --max_isa=avx2  # AVX2 on AVX-512

rnnlab, the backends of `rnnlab.sampling.Sampler` (what `python -m
rnnlab.sample` runs), timed per call including the prime and the noise:
  native_*  the C kernel (`rnnlab.native.sampler`), each instruction-set
            variant this CPU executes;
  jax       one jit-compiled `lax.scan` that draws and feeds back one
            character per step;
  auto      what --backend=auto draws with at that batch size (timed once
            per machine, model and batch, then cached): that backend's
            column.
The peer is the chapter's method written in PyTorch: a Python loop that
calls the model once per character (eager, `torch.no_grad`, softmax with
temperature + `torch.multinomial`).

The last column is auto's achieved matmul FLOP/s (one forward pass of
the model per character, harness.forward_flops_per_token) and its share of
the machine's fp32 matmul peak (train_throughput.matmul_peak_gflops).

Both use the same architecture (the workdir's config, else the default GRU
config: 2 x 256 GRU, embedding 64, vocabulary 65) at batch 1 and batch 64.
Speed does not depend on the weights, so without --workdir the parameters
are freshly initialised. Figures are medians of --repeats timed runs after a
warm-up (which includes compilation for rnnlab). --max_isa as in
benchmarks/train_throughput.py.
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
from benchmarks import train_throughput


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--workdir", default="", help="Trained rnnlab run directory.")
  p.add_argument("--length", type=int, default=1024)
  p.add_argument("--batches", default="1,64")
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--temperature", type=float, default=0.8)
  p.add_argument("--threads", type=int, default=2)
  p.add_argument("--max_isa", choices=("avx2",), default=None)
  return p.parse_args(argv)


def load_rnnlab(workdir: str):
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from rnnlab import base_config, models, sampling  # pylint: disable=g-import-not-at-top
  if workdir:
    run = sampling.load_run_for_inference(pathlib.Path(workdir))
    return run.config, run.model, run.params, len(run.vocab)
  config = base_config.get_config()
  vocab = harness.VOCAB
  model = models.create_model(config.model, vocab_size=vocab)
  params = model.init(jax.random.key(0), jnp.zeros((1, 1), jnp.int32))
  return config, model, params["params"], vocab


def rnnlab_runner(sampler, batch, length, temperature):
  """A function(seed) that draws one batch; called once here to compile."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  prime = jnp.zeros((batch, 1), jnp.int32)

  def run(seed):
    jax.block_until_ready(sampler.generate(
        prime, jax.random.key(seed), length=length, temperature=temperature))

  run(0)
  return run


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
  train_throughput.cap_isa(args.max_isa)
  from rnnlab import cli  # pylint: disable=g-import-not-at-top
  cli.setup()
  import jax  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  from rnnlab import sampling  # pylint: disable=g-import-not-at-top
  config, model, params, vocab = load_rnnlab(args.workdir)
  peer = TorchCharLoop(config, vocab, args.threads)
  m = config.model
  print(f"# {time.strftime('%Y-%m-%d %H:%M')} | {harness.machine()} | "
        f"jax {jax.__version__} | torch {torch.__version__} "
        f"({args.threads} threads) | python {sys.version.split()[0]}")
  print(train_throughput.cpu_line())
  if args.max_isa:
    print(f"# capped at {args.max_isa} (see train_throughput --max_isa)")
  print(f"# model: {m.num_layers} x {m.hidden_size} {m.cell}, embedding "
        f"{m.embed_dim}, vocabulary {vocab}; {args.length} characters per "
        f"sequence; {'trained: ' + args.workdir if args.workdir else 'fresh parameters'}")
  peak = train_throughput.matmul_peak_gflops()
  print(f"# fp32 matmul peak (2048^3, jit): {peak:.0f} GFLOP/s")
  flops_per_char = harness.forward_flops_per_token(
      m.cell, m.num_layers, m.embed_dim, m.hidden_size, vocab)
  natives = train_throughput.columns("natives")  # the default first
  samplers = {c: sampling.Sampler(model, params, "native",
                                  isa=c.removeprefix("native_"))
              for c in natives}
  samplers["jax"] = sampling.Sampler(model, params, "jax")
  auto = sampling.Sampler(model, params, "auto")
  names = ["auto"] + list(samplers) + ["loop"]
  header = (["batch", "auto picks"] + [f"{n} chars/s" for n in names] +
            [f"{n} / loop" for n in names[:-1]] + ["auto / fastest",
                                                   "auto GFLOP/s (% peak)"])
  print("| " + " | ".join(header) + " |")
  print("|---" * len(header) + "|")
  for batch in (int(b) for b in args.batches.split(",")):
    # auto's choice (timed once, or read from the cache); its column is
    # that backend's (the same sampler).
    picked = auto.backend_for(batch)
    picked = "jax" if picked == "jax" else natives[0]
    runs = {name: rnnlab_runner(s, batch, args.length, args.temperature)
            for name, s in samplers.items()}
    runs["loop"] = lambda seed, batch=batch: peer.run(
        batch, args.length, args.temperature, seed)
    peer.run(batch, 8, args.temperature, 0)  # warm-up
    times = {name: [] for name in runs}
    for r in range(args.repeats):  # interleaved, so drift hits all alike
      for name, run in runs.items():
        # An untimed run first: the timed one then starts on a CPU busy
        # with its own work, not with the last column's. Measured on a
        # Zen 3 EPYC (docs/benchmarks.md), native batch-1 sampling ran 25%
        # slower right after the PyTorch loop's column than on its own.
        run(0)
        times[name].append(harness.timed(lambda run=run: run(r + 1)))
    cps = {name: batch * args.length / statistics.median(t)
           for name, t in times.items()}
    cps["auto"] = cps[picked]
    fastest = max((n for n in cps if n != "loop"), key=cps.get)
    row = [str(batch), picked]
    row += [f"{cps[n]:,.0f}" for n in names]
    row += [f"{cps[n] / cps['loop']:.1f}x" for n in names[:-1]]
    row.append(f"{cps['auto'] / cps[fastest]:.2f}x")
    gflops = cps["auto"] * flops_per_char / 1e9
    row.append(f"{gflops:.1f} ({100 * gflops / peak:.0f}%)")
    print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
  os.environ.setdefault("RNNLAB_OFFLINE", "1")
  np.set_printoptions(precision=3)
  main()
