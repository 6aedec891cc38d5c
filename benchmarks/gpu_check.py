"""GPU checks for what CI (CPU only) cannot run: the cuDNN LSTM path,
bf16 compute, and training throughput on the accelerator.

  python -m benchmarks.gpu_check                # numerics, then throughput
  python -m benchmarks.gpu_check --cells=lstm --seconds=0.5

1. Numerics, float32 at "highest" matmul precision (TF32 off): for each
   cell, every implementation against the `nn.scan` reference, outputs and
   parameter/input/carry gradients; prints the max abs error and fails
   (exit 1) above --tol. Error = max |got - ref| / max(1, max |ref|) per
   array (the unit tests use tiny shapes and allclose at 1e-5).
2. bf16 compute: a reference-shape LM in float32 vs the same parameters
   with `model.dtype="bfloat16"` (float32 params, carries, logits);
   prints the max logit difference relative to the largest logit (bf16
   has an 8-bit mantissa: ~1e-2 expected).
3. Training throughput at the reference shape (batch 64 x 128, hidden 256,
   2 layers; the project's own `train_step`): rnnlab per implementation
   and dtype, and PyTorch on the same GPU (cuDNN), median of --repeats.
Results are recorded in docs/benchmarks.md (GPU section).
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from benchmarks import harness
from benchmarks import train_throughput as tt

IMPLEMENTATIONS = {"rnn": ("scan", "fused"), "lstm": ("scan", "fused", "cudnn"),
                   "gru": ("scan", "fused")}


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--cells", default="rnn,lstm,gru")
  p.add_argument("--shape", default="ref")
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--seconds", type=float, default=0.5)
  p.add_argument("--tol", type=float, default=1e-5)
  p.add_argument("--skip_speed", action="store_true")
  p.add_argument("--torch_device", default="cuda")
  return p.parse_args(argv)


def numerics(cell_name: str, tol: float) -> bool:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from rnnlab.models import cells, layers  # pylint: disable=g-import-not-at-top
  batch, steps, features, hidden = 16, 32, 24, 64
  cell = cells.create_cell(cell_name, hidden, {})
  rng = np.random.default_rng(0)
  xs = jnp.asarray(rng.normal(size=(batch, steps, features)), jnp.float32)
  carry = jax.tree.map(
      lambda z: jnp.asarray(rng.normal(size=z.shape), jnp.float32),
      cell.initialize_carry((batch,)))

  def run(implementation, reverse):
    layer = layers.Recurrent(cell, reverse=reverse,
                             implementation=implementation)
    variables = layer.init(jax.random.key(0), xs)
    prng = np.random.default_rng(1)  # the same random (non-zero) biases too
    variables = jax.tree.map(
        lambda p: jnp.asarray(prng.normal(0, 0.1, p.shape), p.dtype),
        variables)

    def loss(v, x, c):
      carry_out, ys = layer.apply(v, x, c)
      w = jnp.linspace(-1, 1, ys.size).reshape(ys.shape)
      return jnp.sum(ys * w) + sum(jnp.sum(t**2)
                                   for t in jax.tree.leaves(carry_out))
    value, grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(
        variables, xs, carry)
    outputs = jax.jit(layer.apply)(variables, xs, carry)
    return outputs, grads, value

  ok = True
  with jax.default_matmul_precision("highest"):
    for reverse in (False, True):
      ref = run("scan", reverse)
      for impl in IMPLEMENTATIONS[cell_name][1:]:
        if impl == "cudnn" and jax.default_backend() != "gpu":
          print(f"| {cell_name} | cudnn | skipped: no GPU | | | |")
          continue
        got = run(impl, reverse)
        # Relative to each array's scale: weight gradients here sum 512
        # terms of size ~10, so fp32 summation order alone moves them ~1e-5.
        err = lambda a, b: max(
            float(jnp.max(jnp.abs(x - y)) / jnp.maximum(1, jnp.max(jnp.abs(x))))
            for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
        out_err, grad_err = err(ref[0], got[0]), err(ref[1], got[1])
        passed = max(out_err, grad_err) <= tol
        ok &= passed
        print(f"| {cell_name} | {impl} vs scan | reverse={reverse} | "
              f"{out_err:.1e} | {grad_err:.1e} | "
              f"{'ok' if passed else 'FAIL'} |", flush=True)
  return ok


def bf16_logits_gap(cell_name: str, s: harness.Shape) -> float:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from rnnlab import models  # pylint: disable=g-import-not-at-top
  c = tt.rnnlab_config(cell_name, s)
  tokens = jnp.asarray(np.random.default_rng(0).integers(
      0, s.vocab, (s.batch, s.seq_len + 1)), jnp.int32)
  batch = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:]}
  model = models.create_model(c.model, vocab_size=s.vocab)
  params = model.init(jax.random.key(0), batch["inputs"])["params"]
  c.model.dtype = "bfloat16"
  model16 = models.create_model(c.model, vocab_size=s.vocab)
  logits = lambda m: jax.jit(m.apply)({"params": params}, batch["inputs"])[0]
  full, half = logits(model), logits(model16)
  assert half.dtype == jnp.float32  # logits (and the loss) stay float32
  return float(jnp.max(jnp.abs(half - full)) / jnp.max(jnp.abs(full)))


def main(argv=None):
  args = parse_args(argv)
  from rnnlab import cli  # pylint: disable=g-import-not-at-top
  cli.setup()
  import jax  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  print(f"# {time.strftime('%Y-%m-%d %H:%M')} | {jax.devices()[0].device_kind}"
        f" | jax {jax.__version__} | torch {torch.__version__}", flush=True)
  cells = args.cells.split(",")
  print("| cell | check | direction | error (outputs) | "
        "error (grads) | |\n|---|---|---|---|---|---|")
  ok = all([numerics(cell, args.tol) for cell in cells])
  s = harness.SHAPES[args.shape]
  for cell in cells:
    print(f"# {cell}: bf16 compute vs float32, max logit difference "
          f"/ max |logit| = {bf16_logits_gap(cell, s):.1e}", flush=True)
  if not args.skip_speed:
    print("\n| cell | rnnlab variant | tok/s | torch cuDNN tok/s | ratio |"
          "\n|---|---|---|---|---|")
    for cell in cells:
      runners = {"torch": tt.TorchRunner(cell, s, threads=1, device=args.torch_device)}
      for impl in IMPLEMENTATIONS[cell]:
        for dtype in ("float32", "bfloat16"):
          if impl == "cudnn" and dtype == "bfloat16":
            continue  # cuDNN path computes in float32
          runners[f"{impl}/{dtype}"] = tt.make_rnnlab(
              cell, s, [f"implementation={impl}", f"dtype={dtype}"])
      samples = harness.interleaved_throughput(
          runners, s.tokens, args.repeats, args.seconds, probe_steps=3)
      tps = {n: harness.summarize(v)[0] for n, v in samples.items()}
      for name, value in tps.items():
        if name != "torch":
          print(f"| {cell} | {name} | {value:,.0f} | {tps['torch']:,.0f} | "
                f"{value / tps['torch']:.2f}x |", flush=True)
  sys.exit(0 if ok else 1)


if __name__ == "__main__":
  main()
