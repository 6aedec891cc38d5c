"""GPU check: what CI (CPU only) cannot run, the cuDNN LSTM path, bf16
compute and training throughput on the accelerator.

  python -m rnnlab.gpu_check                 # numerics, bf16, then throughput
  python -m rnnlab.gpu_check --cells=lstm --seconds=0.5
  python -m rnnlab.gpu_check --allow-cpu     # numerics and bf16 on a CPU

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
   PyTorch is optional (the bench extra): without it that column is
   skipped. Not run on a CPU (benchmarks.train_throughput measures that).

Exit codes: 0 every numeric check within --tol; 1 one above it; 2 a bad
flag, or no GPU (JAX's default backend is not "gpu") without --allow-cpu.
Results are recorded in docs/benchmarks.md (GPU section).

benchmarks/ is not installed with the package: the timing helpers and the
PyTorch peer it shares with benchmarks/ live in `rnnlab.throughput`.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import statistics
import sys
import time

import numpy as np

from rnnlab import cli
from rnnlab import jax_guard
from rnnlab import throughput as throughput_lib
from rnnlab.errors import UserError

IMPLEMENTATIONS = {"rnn": ("scan", "fused"), "lstm": ("scan", "fused", "cudnn"),
                   "gru": ("scan", "fused")}
# configs/<cell>_shakespeare.py's model settings (configs/ is not installed
# with the package); the rest are base_config's defaults.
CELL_SETTINGS = {"rnn": {"activation": "tanh", "unroll": 2}}


@dataclasses.dataclass(frozen=True)
class Shape:
  """Sizes of one check. `numerics`: (batch, steps, features, hidden) of the
  single layer compared across implementations; the rest: the character LM
  of the bf16 and throughput checks."""
  numerics: tuple[int, int, int, int]
  batch: int
  seq_len: int
  hidden: int
  embed: int = 64
  layers: int = 2
  vocab: int = 65

  @property
  def tokens(self) -> int:
    return self.batch * self.seq_len


SHAPES = {
    # The recorded figures' shape (benchmarks/harness.py's "ref").
    "ref": Shape((16, 32, 24, 64), batch=64, seq_len=128, hidden=256),
    # Seconds on a CPU: the tests run the whole check at this one.
    "tiny": Shape((2, 5, 3, 8), batch=2, seq_len=8, hidden=8, embed=8),
}


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog="python -m rnnlab.gpu_check",
                              description=__doc__.split("\n")[0])
  p.add_argument("--cells", default="rnn,lstm,gru",
                 help=f"Comma-separated, of {', '.join(IMPLEMENTATIONS)}.")
  p.add_argument("--shape", default="ref", choices=sorted(SHAPES))
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--seconds", type=float, default=0.5,
                 help="Target length of each timed run.")
  p.add_argument("--tol", type=float, default=1e-5)
  p.add_argument("--skip_speed", action="store_true")
  p.add_argument("--torch_device", default="cuda")
  p.add_argument("--allow-cpu", "--allow_cpu", dest="allow_cpu",
                 action="store_true",
                 help="Without a GPU, run the numeric and bf16 checks on the "
                 "CPU (no throughput) instead of exiting with 2.")
  return p.parse_args(argv)


def import_torch():
  """PyTorch if installed (the bench extra), else None: only the
  throughput table's PyTorch column needs it."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  return torch


def lm_config(cell: str, s: Shape, **model):
  """The character-LM config of configs/<cell>_shakespeare.py at shape `s`,
  a constant learning rate, and the `model` overrides."""
  from rnnlab import base_config  # pylint: disable=g-import-not-at-top
  c = base_config.get_config()
  c.model.cell = cell
  for key, value in {**CELL_SETTINGS.get(cell, {}), **model}.items():
    c.model[key] = value
  c.model.hidden_size, c.model.num_layers = s.hidden, s.layers
  c.model.embed_dim = s.embed
  c.train.batch_size, c.train.seq_len = s.batch, s.seq_len
  c.optim.schedule, c.optim.warmup_steps = "constant", 0
  return c


# --- 1. numerics ---------------------------------------------------------------

def numerics(cell_name: str, s: Shape, tol: float) -> float:
  """Prints a row per implementation and direction; returns the largest
  error (0.0 if only the reference ran)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from rnnlab.models import cells, layers  # pylint: disable=g-import-not-at-top
  batch, steps, features, hidden = s.numerics
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

  # Relative to each array's scale: weight gradients at the ref shape sum
  # 512 terms of size ~10, so fp32 summation order alone moves them ~1e-5.
  err = lambda a, b: max(
      float(jnp.max(jnp.abs(x - y)) / jnp.maximum(1, jnp.max(jnp.abs(x))))
      for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  worst = 0.0
  with jax.default_matmul_precision("highest"):
    for reverse in (False, True):
      ref = run("scan", reverse)
      for impl in IMPLEMENTATIONS[cell_name][1:]:
        if impl == "cudnn" and jax.default_backend() != "gpu":
          print(f"| {cell_name} | cudnn | reverse={reverse} | skipped: no GPU"
                " | | |")
          continue
        got = run(impl, reverse)
        out_err, grad_err = err(ref[0], got[0]), err(ref[1], got[1])
        worst = max(worst, out_err, grad_err)
        print(f"| {cell_name} | {impl} vs scan | reverse={reverse} | "
              f"{out_err:.1e} | {grad_err:.1e} | "
              f"{'ok' if max(out_err, grad_err) <= tol else 'FAIL'} |",
              flush=True)
  return worst


# --- 2. bf16 --------------------------------------------------------------------

def bf16_logits_gap(cell_name: str, s: Shape) -> float:
  """max |bf16 logits - float32 logits| / max |float32 logits|, the same
  parameters."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from rnnlab import models  # pylint: disable=g-import-not-at-top
  c = lm_config(cell_name, s)
  tokens = jnp.asarray(np.random.default_rng(0).integers(
      0, s.vocab, (s.batch, s.seq_len + 1)), jnp.int32)
  model = models.create_model(c.model, vocab_size=s.vocab)
  params = model.init(jax.random.key(0), tokens[:, :-1])["params"]
  c.model.dtype = "bfloat16"
  model16 = models.create_model(c.model, vocab_size=s.vocab)
  logits = lambda m: jax.jit(m.apply)({"params": params}, tokens[:, :-1])[0]
  full, half = logits(model), logits(model16)
  assert half.dtype == jnp.float32  # logits (and the loss) stay float32
  return float(jnp.max(jnp.abs(half - full)) / jnp.max(jnp.abs(full)))


# --- 3. throughput ----------------------------------------------------------------

def jax_runner(cell: str, s: Shape, implementation: str, dtype: str
               ) -> throughput_lib.JaxRunner:
  """The project's jitted `train_step` of the char LM, ready to time."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from rnnlab import models, train  # pylint: disable=g-import-not-at-top
  from rnnlab.tasks import char_lm  # pylint: disable=g-import-not-at-top
  c = lm_config(cell, s, implementation=implementation, dtype=dtype)
  model = models.create_model(c.model, vocab_size=s.vocab)
  state, schedule = train.create_train_state(
      model, (jnp.zeros((1, s.seq_len), jnp.int32),), c)
  step_fn = train.make_train_step(functools.partial(char_lm.lm_loss, model),
                                  schedule)
  return throughput_lib.JaxRunner(state, step_fn, s)


def throughput(cells: list[str], s: Shape, repeats: int, seconds: float,
               torch, torch_device: str = "cuda",
               implementations: dict | None = None,
               dtypes: tuple[str, ...] = ("float32", "bfloat16")
               ) -> dict[str, dict[str, float]]:
  """Prints the throughput table; returns {cell: {column: median tok/s}}.
  `torch` None (not installed): the PyTorch column is skipped."""
  implementations = implementations or IMPLEMENTATIONS
  if torch is None:
    print("# PyTorch not installed: its column is skipped "
          "(pip install -e '.[bench]' adds it).")
  else:
    print(f"# PyTorch {torch.__version__} on {torch_device}")
  print("\n| cell | rnnlab variant | tok/s | torch cuDNN tok/s | ratio |"
        "\n|---|---|---|---|---|")
  results = {}
  for cell in cells:
    runners = {}
    if torch is not None:
      runners["torch"] = throughput_lib.TorchRunner(cell, s, torch_device)
    for impl in implementations[cell]:
      for dtype in dtypes:
        if impl == "cudnn" and dtype == "bfloat16":
          continue  # cuDNN path computes in float32
        runners[f"{impl}/{dtype}"] = jax_runner(cell, s, impl, dtype)
    samples = throughput_lib.interleaved_throughput(runners, s.tokens,
                                                    repeats, seconds, 3)
    tps = {name: statistics.median(v) for name, v in samples.items()}
    peer = tps.get("torch")
    for name, value in tps.items():
      if name != "torch":
        print(f"| {cell} | {name} | {value:,.0f} | "
              f"{f'{peer:,.0f}' if peer else '-'} | "
              f"{f'{value / peer:.2f}x' if peer else '-'} |", flush=True)
    results[cell] = tps
  return results


# --- the command --------------------------------------------------------------------

def check(args: argparse.Namespace) -> int:
  """Runs the checks `args` asks for; returns the exit code."""
  import jax  # pylint: disable=g-import-not-at-top
  try:
    cells = cli.comma_choices(args.cells, IMPLEMENTATIONS, "--cells")
  except UserError as e:
    sys.stderr.write(f"error: {e}\n")
    return 2
  backend = jax.default_backend()
  devices = jax.devices()
  if backend != "gpu" and not (args.allow_cpu and backend == "cpu"):
    sys.stderr.write(
        f"error: no GPU found: JAX {jax.__version__}'s default backend is "
        f"{backend} ({len(devices)} x {devices[0].device_kind}). On a machine "
        "with an NVIDIA GPU install JAX's CUDA build (pip install -e "
        "'.[cuda12]'); --allow-cpu runs the numeric checks on the CPU.\n")
    return 2
  jax_guard.check()  # the backend is known now
  s = SHAPES[args.shape]
  kind = devices[0].device_kind
  print(f"# {time.strftime('%Y-%m-%d %H:%M')} | "
        f"{kind if kind == backend else f'{kind} ({backend})'} | "
        f"jax {jax.__version__} | shape {args.shape}", flush=True)
  print("| cell | check | direction | error (outputs) | "
        "error (grads) | |\n|---|---|---|---|---|---|")
  worst = max(numerics(cell, s, args.tol) for cell in cells)
  ok = worst <= args.tol
  print(f"# numerics: max error {worst:.1e} (tol {args.tol:.0e}): "
        f"{'ok' if ok else 'FAIL'}", flush=True)
  for cell in cells:
    print(f"# {cell}: bf16 compute vs float32, max logit difference "
          f"/ max |logit| = {bf16_logits_gap(cell, s):.1e}", flush=True)
  if backend != "gpu":
    print(f"# throughput skipped on {backend} "
          "(python -m benchmarks.train_throughput measures the CPU).")
  elif not args.skip_speed:
    throughput(cells, s, args.repeats, args.seconds, import_torch(),
               args.torch_device)
  return 0 if ok else 1


def main(argv=None):
  args = parse_args(argv)
  cli.setup()
  sys.exit(check(args))


if __name__ == "__main__":
  main()
