"""Training throughput: rnnlab's implementations vs stock Flax vs PyTorch.

  python -m benchmarks.train_throughput                 # all cells and shapes
  python -m benchmarks.train_throughput --cells=gru --shapes=ref --repeats=7
  python -m benchmarks.train_throughput --max_isa=avx2  # AVX2 on an AVX-512 CPU

For each (cell, shape) every implementation runs interleaved in this one
process: repeat r times {each column}, each timing about a second of full
training steps (forward, backward, clip-by-global-norm, Adam). A figure is
the median over repeats, after a warm-up.

rnnlab columns: the project's own model (`models.create_model`) and jitted
`train.train_step`, with the model settings of `configs/<cell>_shakespeare.py`
(only the shape changed), one column per `model.implementation`:
  auto       what training runs: `train.choose_for_config` times the
             candidates on the real training step of that config (once per
             machine and shape; then `rnnlab.native`'s cache); its column
             is that of the implementation it picked
  native_*   each instruction-set variant of the native kernels this CPU
             executes ("natives" in --impls)
  fused, scan  the XLA implementations
Peers: stock Flax (`nn.RNN` over `OptimizedLSTMCell` / `GRUCell` /
`SimpleCell`) and PyTorch (eager `nn.LSTM` / `nn.GRU` / `nn.RNN`, oneDNN
kernels, 2 threads, `clip_grad_norm_` + `torch.optim.Adam`).
All: embedding 64, 2 layers, dropout 0.1 between layers and before the
readout, vocabulary 65, fp32, random tokens.

--max_isa=avx2 caps every implementation at AVX2 + FMA, to measure an AVX2
machine's code paths on an AVX-512 one: the native kernels' avx2 variant
(RNNLAB_NATIVE_ISA), XLA's code generation (--xla_cpu_max_isa=AVX2) and
PyTorch's kernels (ONEDNN_MAX_CPU_ISA=AVX2, ATEN_CPU_CAPABILITY=avx2). It is
not a measurement of an AVX2 CPU: caches and clocks are this CPU's.

"auto" needs the Tiny Shakespeare corpus (RNNLAB_DATA_DIR), as training
does. Needs the bench extra (README, Speed: PyTorch's CPU wheel).
"""
from __future__ import annotations

import argparse
import functools
import os
import pathlib
import sys
import time


from benchmarks import harness
from rnnlab import throughput


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--cells", default="rnn,lstm,gru")
  p.add_argument("--shapes", default="ref,h512,h1024")
  p.add_argument("--impls", default="auto,natives,fused,scan,flax,torch",
                 help="Columns: auto, natives (every native variant this "
                 "CPU runs), native_<isa>, fused, scan, flax, torch.")
  p.add_argument("--repeats", type=int, default=7)
  p.add_argument("--seconds", type=float, default=1.0,
                 help="Target length of each timed run.")
  p.add_argument("--threads", type=int, default=2, help="PyTorch threads.")
  p.add_argument("--max_isa", choices=("avx2",), default=None,
                 help="Cap every implementation at this instruction set.")
  p.add_argument("--override", action="append", default=[],
                 help="rnnlab model config override, e.g. unroll=2.")
  return p.parse_args(argv)


def cap_isa(isa: str | None):
  """Sets the environment that caps XLA, PyTorch and the native kernels at
  `isa` (before any of them is imported)."""
  if isa != "avx2":
    return
  os.environ["XLA_FLAGS"] = " ".join(
      [os.environ.get("XLA_FLAGS", ""), "--xla_cpu_max_isa=AVX2"]).strip()
  os.environ["ONEDNN_MAX_CPU_ISA"] = "AVX2"
  os.environ["ATEN_CPU_CAPABILITY"] = "avx2"
  os.environ["RNNLAB_NATIVE_ISA"] = "avx2"


def columns(impls: str) -> list[str]:
  """--impls with "natives" expanded to the variants this CPU runs (capped
  by RNNLAB_NATIVE_ISA)."""
  from rnnlab.native import build  # pylint: disable=g-import-not-at-top
  isas = build.supported_isas()
  isas = isas[isas.index(build.default_isa()):]
  out = []
  for name in impls.split(","):
    out += [f"native_{i}" for i in isas] if name == "natives" else [name]
  return out


# --- rnnlab -----------------------------------------------------------------

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"


def rnnlab_config(cell: str, s: harness.Shape, overrides=()):
  """configs/<cell>_shakespeare.py at the benchmark's shape."""
  from rnnlab import base_config  # pylint: disable=g-import-not-at-top
  c = base_config.load_file(str(CONFIGS / f"{cell}_shakespeare.py"))
  c.model.cell, c.model.hidden_size = cell, s.hidden
  c.model.num_layers, c.model.embed_dim = s.layers, s.embed
  c.train.batch_size, c.train.seq_len = s.batch, s.seq_len
  c.optim.schedule, c.optim.warmup_steps = "constant", 0
  for kv in overrides:
    key, value = kv.split("=", 1)
    c.model[key] = type(c.model[key])(
        value if not isinstance(c.model[key], bool) else value == "True")
  return c


JaxRunner = throughput.JaxRunner  # times a jitted training step


def auto_choice(cell, s, overrides=()):
  """What implementation="auto" trains with at this shape (an
  autotune.Choice: timed now, or from the cache)."""
  from rnnlab import train  # pylint: disable=g-import-not-at-top
  c = rnnlab_config(cell, s, overrides)
  c.model.implementation = "auto"
  return train.choose_for_config(c)


def make_rnnlab(cell, s, overrides=()):
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from rnnlab import models, train  # pylint: disable=g-import-not-at-top
  from rnnlab.tasks import char_lm  # pylint: disable=g-import-not-at-top
  c = rnnlab_config(cell, s, overrides)
  model = models.create_model(c.model, vocab_size=s.vocab)
  state, schedule = train.create_train_state(
      model, (jnp.zeros((1, s.seq_len), jnp.int32),), c)
  step = train.make_train_step(functools.partial(char_lm.lm_loss, model),
                               schedule)
  return JaxRunner(state, step, s)


# --- stock Flax ---------------------------------------------------------------

def make_flax(cell, s):
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from flax.training import train_state  # pylint: disable=g-import-not-at-top
  cells = {"lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell,
           "rnn": nn.SimpleCell}

  class StockFlaxLM(nn.Module):
    @nn.compact
    def __call__(self, tokens, train: bool = True):
      x = nn.Embed(s.vocab, s.embed)(tokens)
      for i in range(s.layers):
        if i:
          x = nn.Dropout(0.1, deterministic=not train)(x)
        x = nn.RNN(cells[cell](s.hidden))(x)
      x = nn.Dropout(0.1, deterministic=not train)(x)
      return nn.Dense(s.vocab)(x)

  model = StockFlaxLM()
  params = model.init(jax.random.key(0), jnp.zeros((1, s.seq_len), jnp.int32),
                      train=False)["params"]
  tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(2e-3))
  state = train_state.TrainState.create(apply_fn=model.apply, params=params,
                                        tx=tx)

  def step(state, batch, rng):
    def loss_fn(p):
      logits = model.apply({"params": p}, batch["inputs"],
                           rngs={"dropout": jax.random.fold_in(rng,
                                                               state.step)})
      return optax.softmax_cross_entropy_with_integer_labels(
          logits, batch["targets"]).mean()
    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    return state.apply_gradients(grads=grads), {"loss": loss}

  return JaxRunner(state, jax.jit(step, donate_argnums=0), s)


# PyTorch: rnnlab.throughput.TorchRunner (the GPU check shares it).

# --- peak -----------------------------------------------------------------------

def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
  """fp32 GFLOP/s of a large jitted matmul: the machine's practical peak."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  dot = jax.jit(lambda x: x @ x)
  dot(a).block_until_ready()
  best = min(harness.timed(lambda: dot(a).block_until_ready())
             for _ in range(repeats))
  return 2 * n**3 / best / 1e9


def cpu_line() -> str:
  """The CPU model and the instruction-set flags that decide the variants."""
  from rnnlab.native import build  # pylint: disable=g-import-not-at-top
  keep = ("avx", "fma", "sse4", "amx", "neon", "asimd", "sve")
  flags = sorted(f for f in build._cpu_flags()  # pylint: disable=protected-access
                 if f.startswith(keep))
  return (f"# CPU: {build.cpu_model()}; flags: {' '.join(flags)}\n"
          f"# native variants it runs: {', '.join(build.supported_isas())}; "
          f"built here: {build.default_isa()}")


def main(argv=None):
  args = parse_args(argv)
  cap_isa(args.max_isa)
  from rnnlab import cli  # pylint: disable=g-import-not-at-top
  cli.setup()
  import jax  # pylint: disable=g-import-not-at-top
  impls = columns(args.impls)
  rnnlab_impls = [i for i in impls if i not in ("auto", "flax", "torch")]
  makers = {name: (lambda c, s, name=name: make_rnnlab(
      c, s, args.override + [f"implementation={name}"]))
            for name in rnnlab_impls}
  makers["flax"] = make_flax
  makers["torch"] = lambda c, s: throughput.TorchRunner(
      c, s, threads=args.threads)
  peak = matmul_peak_gflops()
  print(f"# {time.strftime('%Y-%m-%d %H:%M')} | {harness.machine()} | "
        f"jax {jax.__version__} | python {sys.version.split()[0]}")
  print(cpu_line())
  if args.max_isa:
    print(f"# capped at {args.max_isa}: XLA_FLAGS={os.environ['XLA_FLAGS']} "
          f"ONEDNN_MAX_CPU_ISA={os.environ['ONEDNN_MAX_CPU_ISA']} "
          f"ATEN_CPU_CAPABILITY={os.environ['ATEN_CPU_CAPABILITY']} "
          f"RNNLAB_NATIVE_ISA={os.environ['RNNLAB_NATIVE_ISA']}")
  if "torch" in impls:
    import torch  # pylint: disable=g-import-not-at-top
    print(f"# torch {torch.__version__}, {args.threads} threads")
  print(f"# fp32 matmul peak (2048^3, jit): {peak:.0f} GFLOP/s")
  if args.override:
    print(f"# rnnlab overrides: {args.override}")
  natives = [i for i in impls if i.startswith("native_")]
  header = (["cell", "shape"] + (["auto runs"] if "auto" in impls else []) +
            [f"{i} tok/s" for i in impls] +
            ["auto/torch", "auto/flax", "auto/fastest"] +
            [f"{i}/fused" for i in natives] + ["auto GFLOP/s (% peak)",
                                               "noise"])
  print("| " + " | ".join(header) + " |")
  print("|---" * len(header) + "|")
  results = {}
  for shape_name in args.shapes.split(","):
    s = harness.SHAPES[shape_name]
    for cell in args.cells.split(","):
      picked = auto_choice(cell, s, args.override) if "auto" in impls else None
      # "auto" is the column of the implementation it picked (the same
      # program); timed separately only if that column is not asked for.
      runners = {name: makers[name](cell, s) for name in impls
                 if name != "auto"}
      if picked and picked.choice not in runners:
        runners["auto"] = make_rnnlab(
            cell, s, args.override + [f"implementation={picked.choice}"])
      samples = harness.interleaved_throughput(runners, s.tokens,
                                               args.repeats, args.seconds)
      if picked and "auto" not in samples:
        samples["auto"] = samples[picked.choice]
      stats = {n: harness.summarize(v) for n, v in samples.items()}
      results[(cell, shape_name)] = stats
      tps = {n: m for n, (m, _) in stats.items()}
      ratio = lambda a, b: (f"{tps[a] / tps[b]:.2f}x"
                            if a in tps and b in tps else "-")
      fastest = max((n for n in tps if n not in ("flax", "torch")),
                    key=tps.get, default=None)
      row = [cell, shape_name] + ([picked.choice] if picked else [])
      row += [f"{tps[n]:,.0f}" for n in impls]
      row += [ratio("auto", "torch"), ratio("auto", "flax"),
              ratio("auto", fastest) if fastest else "-"]
      row += [ratio(n, "fused") for n in natives]
      if "auto" in tps:
        gflops = tps["auto"] * harness.train_flops_per_token(cell, s) / 1e9
        row.append(f"{gflops:.0f} ({100 * gflops / peak:.0f}%)")
      else:
        row.append("-")
      row.append("±" + "/".join(f"{100 * stats[n][1]:.0f}%" for n in impls))
      print("| " + " | ".join(row) + " |", flush=True)
      del runners
  return results


if __name__ == "__main__":
  os.environ.setdefault("RNNLAB_OFFLINE", "1")
  main()
