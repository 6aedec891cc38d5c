"""Where a training step's time goes, for one cell at one shape.

  python -m benchmarks.step_breakdown --cell=gru --shape=ref
  python -m benchmarks.step_breakdown --cell=lstm --shape=h1024 --max_isa=avx2
  python -m benchmarks.step_breakdown --trace=runs/gru/profile   # a saved trace

Two views of the same step (rnnlab's model and `train_step`, as in
benchmarks/train_throughput.py):

1. Wall-clock ablation: forward only; forward + backward; the optimizer
   update alone; the full step. Plus the recurrent matmuls on their own
   (a loop of h @ W_hh over T steps per layer, forward and backward shapes),
   timed in isolation.
2. A profiler trace of a few steps, with every XLA op's time summed over
   both threads into matmul (YNNPACK/dot), elementwise fusions, data
   movement (copies, slices, stacking of per-step outputs), loop control and
   waits. Thread time exceeds wall time when both cores are busy. The
   ops that took the most time follow, by name.

--max_isa=avx2 caps XLA and the native kernels as train_throughput's does.
"""
from __future__ import annotations

import argparse
import collections
import functools
import glob
import os
import re
import statistics
import tempfile

from benchmarks import harness
from benchmarks import train_throughput


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--cell", default="gru")
  p.add_argument("--shape", default="ref", choices=sorted(harness.SHAPES))
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--trace", default="", help="Summarise this trace only.")
  p.add_argument("--override", action="append", default=[])
  p.add_argument("--max_isa", choices=("avx2",), default=None)
  p.add_argument("--top", type=int, default=10, help="ops listed by name")
  return p.parse_args(argv)


CATEGORIES = (  # first match wins
    # implementation="native": the C++ time loops (recurrent matmuls and
    # gates, forward and backward), one op per layer and direction. The op's
    # time is its wall time; its OpenMP team keeps both cores busy.
    ("native loops (ffi_call)", re.compile(r"ffi_call|custom-call")),
    ("matmul", re.compile(r"^(ynn_fusion|dot|onednn|xnn)")),
    ("data movement", re.compile(
        r"(dynamic-update-slice|dynamic-slice|copy|concatenate|pad|slice|"
        r"transpose|broadcast|bitcast)")),
    ("loop control", re.compile(r"^(while|wrapped_compare|wrapped_add$|"
                                r"conditional)")),
    ("waiting", re.compile(r"(Await|wait)")),
    ("elementwise", re.compile(r"fusion|^wrapped_")),
)


def categorize(name: str) -> str:
  base = re.sub(r"\.\d+$", "", name)
  for category, pattern in CATEGORIES:
    if pattern.search(base):
      return category
  return "other"


def summarize_trace(directory: str, steps: int = 1) -> dict[str, float]:
  """Per-step milliseconds of op time by category from an XLA CPU trace."""
  return by_category(op_times(directory, steps))


def by_category(ops: dict[str, float]) -> dict[str, float]:
  """Op times by name -> summed by `categorize`'s category."""
  totals = collections.Counter()
  for name, ms in ops.items():
    totals[categorize(name)] += ms
  return dict(totals)


def op_times(directory: str, steps: int = 1) -> collections.Counter:
  """Per-step milliseconds of op time by op name from an XLA CPU trace."""
  from jax.profiler import ProfileData  # pylint: disable=g-import-not-at-top
  files = glob.glob(os.path.join(directory, "**", "*.xplane.pb"),
                    recursive=True)
  if not files:
    raise FileNotFoundError(f"No *.xplane.pb under {directory}.")
  data = ProfileData.from_file(max(files, key=os.path.getmtime))
  totals = collections.Counter()
  for plane in data.planes:
    for line in plane.lines:
      if not line.name.startswith(("tf_XLAEigen", "tf_XLAPjRtCpuClient")):
        continue  # XLA's compute threads only
      for event in line.events:
        if event.name.startswith(("ThunkExecutor", "end: ")):
          continue
        totals[event.name] += event.duration_ns / 1e6 / steps
  return totals


def median_ms(fn, repeats):
  fn()
  return statistics.median(harness.timed(fn) for _ in range(repeats)) * 1e3


def ablation(cell, shape, overrides, repeats):
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from rnnlab import models, optim  # pylint: disable=g-import-not-at-top
  from rnnlab.tasks import char_lm  # pylint: disable=g-import-not-at-top
  s = harness.SHAPES[shape]
  runner = train_throughput.make_rnnlab(cell, s, overrides)
  config = train_throughput.rnnlab_config(cell, s, overrides)
  model = models.create_model(config.model, vocab_size=s.vocab)
  params = runner.state.params
  batch, rng = runner.batch, jax.random.key(0)
  loss = functools.partial(char_lm.lm_loss, model)
  fwd = jax.jit(lambda p: loss(p, batch, rng)[0])
  fwd_bwd = jax.jit(jax.value_and_grad(lambda p: loss(p, batch, rng)[0]))
  grads = fwd_bwd(params)[1]
  tx = optim.create_optimizer(config.optim, 1000)
  opt_state = tx.init(params)
  update = jax.jit(lambda g, o, p: optax.apply_updates(
      p, tx.update(g, o, p)[0]))
  block = jax.block_until_ready
  times = {
      "forward": median_ms(lambda: block(fwd(params)), repeats),
      "forward + backward": median_ms(lambda: block(fwd_bwd(params)),
                                      repeats),
      "optimizer update": median_ms(
          lambda: block(update(grads, opt_state, params)), repeats),
      "full train step": median_ms(lambda: runner.run(1), repeats),
  }
  # The recurrent matmuls alone: h @ W_hh (forward) and dz @ W_hh^T
  # (backward) for T steps and every layer, at this batch and width.
  g = harness.GATES[cell]
  w = jnp.ones((s.hidden, g * s.hidden), jnp.float32) * 0.01
  h0 = jnp.ones((s.batch, s.hidden), jnp.float32)

  @jax.jit
  def loop_matmuls(h, w):
    def step(h, _):
      z = h @ w
      return jnp.tanh(z[:, :s.hidden] + (z @ w.T)[:, :s.hidden] * 1e-3), None
    return jax.lax.scan(step, h, None, length=s.seq_len * s.layers)[0]

  times["recurrent matmuls alone (fwd + bwd dh)"] = median_ms(
      lambda: block(loop_matmuls(h0, w)), repeats)
  flops = harness.train_flops_per_token(cell, s) * s.tokens
  return times, flops


def main(argv=None):
  args = parse_args(argv)
  train_throughput.cap_isa(args.max_isa)  # before jax is imported
  from rnnlab import cli  # pylint: disable=g-import-not-at-top
  cli.setup()
  if args.trace:
    for category, ms in sorted(summarize_trace(args.trace).items(),
                               key=lambda kv: -kv[1]):
      print(f"{category:14s} {ms:9.1f} ms (all traced steps)")
    return
  import jax  # pylint: disable=g-import-not-at-top
  peak = train_throughput.matmul_peak_gflops()
  times, flops = ablation(args.cell, args.shape, args.override, args.repeats)
  step_ms = times["full train step"]
  print(f"# {args.cell} at {args.shape} ({harness.SHAPES[args.shape]}), "
        f"overrides {args.override or 'none'}; jax {jax.__version__}"
        + (f"; capped at {args.max_isa}" if args.max_isa else ""))
  print(f"# matmul FLOPs per step {flops / 1e9:.1f} G; achieved "
        f"{flops / step_ms / 1e6:.0f} GFLOP/s = "
        f"{100 * flops / step_ms / 1e6 / peak:.0f}% of the {peak:.0f} "
        "GFLOP/s matmul peak")
  print("| part | ms | share of step |")
  print("|---|---|---|")
  for name, ms in times.items():
    print(f"| {name} | {ms:.1f} | {100 * ms / step_ms:.0f}% |")
  print(f"| backward (fwd+bwd - fwd) | "
        f"{times['forward + backward'] - times['forward']:.1f} | |")

  runner = train_throughput.make_rnnlab(
      args.cell, harness.SHAPES[args.shape], args.override)
  runner.run(2)
  steps = 3
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir):
      runner.run(steps)
    ops = op_times(trace_dir, steps)
  categories = by_category(ops)
  total = sum(categories.values())
  print(f"\nProfiler: XLA op time per step, summed over threads "
        f"({total:.0f} ms of thread time in a {step_ms:.0f} ms step)")
  print("| category | ms/step | share |")
  print("|---|---|---|")
  for category, ms in sorted(categories.items(), key=lambda kv: -kv[1]):
    print(f"| {category} | {ms:.1f} | {100 * ms / total:.0f}% |")
  print(f"\nThe {args.top} ops that took the most thread time per step")
  print("| op | category | ms/step | share |")
  print("|---|---|---|---|")
  for name, ms in ops.most_common(args.top):
    print(f"| {name} | {categorize(name)} | {ms:.1f} | "
          f"{100 * ms / total:.0f}% |")


if __name__ == "__main__":
  os.environ.setdefault("RNNLAB_OFFLINE", "1")
  main()
