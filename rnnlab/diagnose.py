"""Gradient flow through time: ‖∂L_T/∂h_t‖ for every t of a character LM.

  python -m rnnlab.diagnose --config=configs/gru_shakespeare.py \
      --output_dir=/tmp/gf [--seq_len=128 --num_batches=8 --batch_size=32]
  python -m rnnlab.diagnose --workdir=runs/gru --output_dir=/tmp/gf --append

L_T is the cross-entropy of the last position only (t = T-1) of windows of
T characters that start from the zero state, as in training. Its gradient
with respect to the state h_t of every layer at every step t comes from one
backward pass: the model runs its own step (`RecurrentLM.step`) one token at
a time with a zero perturbation δ_t added to each layer's new carry, so
∂L_T/∂δ_t = ∂L_T/∂h_t. Perturbing h_t changes both the layer's output at t
(to the layer above, or the readout) and the carry into t+1, so it is the
total derivative through all paths. Each part of the carry (the cell's
`carry_names`) gets its own δ: for the LSTM's (c_t, h_t), δ on c_t reaches
L_T only through later steps (h_t is computed before it), so ∂L_T/∂c_t is
the gradient with respect to the carried cell state with h_t held fixed,
and is zero at T-1.

Norms are taken per window over the H units, then averaged over all windows
(`num_batches` x `batch_size` random windows of the split, a pure function
of --seed). The headline number is the ratio
‖∂L_T/∂h_0‖ / ‖∂L_T/∂h_{T-1}‖ of the top layer (the one feeding the readout).
The JSON also holds every layer's norms for every t (mean and geometric mean
over windows), the initialisers, and each recurrent gate block's largest
singular value.

Without --workdir the parameters are a fresh initialisation with
config.seed (the parameters step 0 of training starts from); with --workdir
the run's newest checkpoint (and its config.json unless --config is given).
Writes <output_dir>/gradient_flow.json and gradient_flow.png (log-scale);
--append keeps the other runs already in that JSON (same label: replaced),
so that one plot compares several models.
"""
from __future__ import annotations

import functools
import math
import pathlib
import time
from typing import Any

from absl import app
from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from rnnlab import cli
from rnnlab import config_check
from rnnlab import metrics as metrics_lib
from rnnlab import rundir
from rnnlab import tasks
from rnnlab import train
from rnnlab.data import text
from rnnlab.errors import CheckpointError, UserError
from rnnlab.models import cells as cells_lib
from rnnlab.models import layers
from rnnlab.models import lm as lm_lib
from rnnlab.registry import lookup

Array = jax.Array

JSON_NAME = "gradient_flow.json"
PNG_NAME = "gradient_flow.png"
SPLITS = ("train", "val", "test")


def cell_class(cell: str) -> type[cells_lib.RecurrentCell]:
  """The registered cell: its `carry_names` and `gate_names` name what
  this module reports."""
  return lookup(cells_lib.CELLS, cell, "cell")


# --- The model, one step at a time, with perturbed carries. ---------------


def zero_deltas(model: lm_lib.RecurrentLM, batch_size: int, steps: int):
  """Per layer, a carry-shaped tree of zeros [T, B, H]."""
  return jax.tree.map(lambda c: jnp.zeros((steps, *c.shape), c.dtype),
                      model.initialize_carry(batch_size))


def perturbed_forward(model: lm_lib.RecurrentLM, params, inputs: Array,
                      deltas) -> Array:
  """inputs [B, T] int, deltas from `zero_deltas` -> logits [B, T, V].

  With zero deltas this is `model.apply({"params": params}, inputs)[0]`,
  computed step by step in a `lax.scan` from the zero state.
  """
  carries = model.initialize_carry(inputs.shape[0])

  def body(carries, step_inputs):
    tokens, delta = step_inputs
    logits, carries = model.apply({"params": params}, tokens, carries, delta,
                                  method="step")
    return carries, logits

  _, logits = jax.lax.scan(body, carries, (inputs.T, deltas))
  return jnp.swapaxes(logits, 0, 1)


def last_step_losses(model, params, inputs: Array, targets: Array,
                     deltas) -> Array:
  """Cross-entropy [B] of the last position of each window."""
  logits = perturbed_forward(model, params, inputs, deltas)
  return optax.softmax_cross_entropy_with_integer_labels(
      logits[:, -1], targets[:, -1])


@functools.partial(jax.jit, static_argnums=0)
def state_gradients(model: lm_lib.RecurrentLM, params, inputs: Array,
                    targets: Array):
  """(losses [B], ∂L_T/∂carry: per layer a carry-shaped tree [T, B, H]).

  The gradient is of the *sum* of the windows' last-step losses: windows are
  independent, so each window's slice is the gradient of its own loss.
  """
  def total(deltas):
    losses = last_step_losses(model, params, inputs, targets, deltas)
    return jnp.sum(losses), losses

  deltas = zero_deltas(model, inputs.shape[0], inputs.shape[1])
  grads, losses = jax.grad(total, has_aux=True)(deltas)
  return losses, grads


def check_matches_model(model, params, inputs: Array, atol: float = 1e-4):
  """Max |difference| of the step-by-step logits from the model's own
  forward pass (whatever its layer schedule or implementation) on inputs
  [B, T]; raises RuntimeError if it exceeds atol."""
  expected, _ = model.apply({"params": params}, inputs)
  got = perturbed_forward(model, params, inputs,
                          zero_deltas(model, *inputs.shape))
  err = float(jnp.max(jnp.abs(expected - got)))
  if not err <= atol:  # a bug: the model's step and forward pass disagree
    raise RuntimeError(f"Step-by-step logits differ from the model's by "
                       f"{err:.3g} (> {atol}); see `RecurrentStack.step`.")
  return err


def window_norms(grads, cell: str) -> list[dict[str, np.ndarray]]:
  """Per layer, per carry part: norms [T, B] over the H units, float64 on
  the host so that tiny gradients do not underflow when squared."""
  parts = cell_class(cell).carry_names
  out = []
  for layer in grads:
    leaves = jax.tree.leaves(layer)
    assert len(leaves) == len(parts), (cell, len(leaves))
    out.append({p: np.linalg.norm(np.asarray(g, np.float64), axis=-1)
                for p, g in zip(parts, leaves)})
  return out


# --- Initialisers and parameter summaries. -------------------------------


def initialisers(model_config: ml_collections.ConfigDict) -> dict[str, str]:
  """How `rnnlab.models` initialises this model's parameters (cells.py,
  lm.py); `tests/test_diagnose.py` checks these against a fresh init."""
  c = model_config
  cell = layers.cell_from_config(c)
  gates = cell.gate_names
  out = {
      "embedding": (f"normal(std={c.embed_init_std})"
                    if c.embedding == "learned" else "one-hot (no parameters)"),
      "input_kernel": "lecun_normal (truncated normal, variance 1/fan_in)",
      "recurrent_kernel": "orthogonal [H, H]",
      "biases": "zero",
      "readout": "lecun_normal kernel, zero bias",
      "initial_state": "zero",
  }
  if len(gates) > 1:
    out["input_kernel"] += (f", gates {'/'.join(gates)} fused in one "
                            f"[D, {len(gates)}H] matrix")
    out["recurrent_kernel"] = (f"orthogonal, each gate's [H, H] block "
                               f"({'/'.join(gates)}) drawn separately")
  out.update(cell.init_notes())
  return out


def layer_params(params, layer: int):
  return params["rnn"][f"layers_{layer}"]


def param_summary(params, cell: str, num_layers: int) -> list[dict[str, Any]]:
  """Per layer: largest singular value of each recurrent gate block and
  the mean input bias of each gate, to relate gradient flow to the
  weights. Gate names are the cell's `gate_names`."""
  names = cell_class(cell).gate_names
  out = []
  for l in range(num_layers):
    p = layer_params(params, l)
    # Recurrent kernels [H, k*H]: hidden_proj's blocks first, then any
    # other (the reset-before GRU's candidate_proj holds n).
    kernels = [p["hidden_proj"]["kernel"]] + [
        v["kernel"] for k, v in p.items()
        if k not in ("input_proj", "hidden_proj") and isinstance(v, dict) and
        "kernel" in v]
    blocks = [b for w in kernels for b in np.split(
        np.asarray(w, np.float64), w.shape[1] // w.shape[0], axis=1)]
    bias = np.split(np.asarray(p["input_proj"]["bias"], np.float64),
                    len(names))
    out.append({
        "recurrent_max_singular_value": {
            n: float(np.linalg.norm(b, 2)) for n, b in zip(names, blocks)},
        "input_bias_mean": {n: float(np.mean(b))
                            for n, b in zip(names, bias)}})
  return out


# --- Loading, measuring, writing. ----------------------------------------


def load(config: ml_collections.ConfigDict | None,
         workdir: str | pathlib.Path | None):
  """(config, task, params, source): fresh init, or the newest checkpoint.

  source: {"kind": "init" | "checkpoint", "step": int, ...}.
  """
  if config is None and workdir is None:
    raise UserError("Give --config (measure a fresh initialisation) or "
                    "--workdir (a trained run's newest checkpoint), or both.")
  if config is None:
    config = rundir.load_config(workdir)
  if config.task != "char_lm":
    raise UserError(f"rnnlab.diagnose measures character LMs: config.task="
                    f"{config.task!r}. Valid choices: 'char_lm'.")
  if config.model.name != "rnn_lm":
    raise UserError(f"rnnlab.diagnose needs config.model.name='rnn_lm' (its "
                    f"step-by-step form); got {config.model.name!r}.")
  config_check.validate(config)  # before the corpus is read
  task = tasks.create_task(config)
  if workdir is None:
    if config.init_from:
      raise UserError(
          f"config.init_from={config.init_from!r}: measuring an "
          "initialisation copied from another run is not supported; give "
          "that run's --workdir instead, or unset init_from.")
    params = train.init_params(task.model, task.init_inputs(), config.seed)
    return config, task, params, {"kind": "init", "step": 0,
                                  "seed": config.seed}
  workdir = pathlib.Path(workdir)
  vocab_path = workdir / rundir.VOCAB_FILE
  if vocab_path.exists() and text.Vocab.load(vocab_path) != task.vocab:
    raise CheckpointError(f"{vocab_path} does not match the corpus of this "
                          "config; the embedding rows would be misread.")
  step, params = rundir.restore_params(task.model, task.init_inputs(), workdir)
  return config, task, params, {"kind": "checkpoint", "step": int(step),
                                "workdir": str(workdir)}


def measure(task, params, *, seq_len: int = 128, num_batches: int = 8,
            batch_size: int = 32, split: str = "val",
            seed: int = 0, check: bool = True) -> dict[str, Any]:
  """Mean gradient norms per layer and carry part, and the ratios.

  check: first test on two of the windows that the step-by-step model
  computes the same logits as the model itself (`check_matches_model`).
  """
  for name, value, least in (("seq_len", seq_len, 2),
                             ("num_batches", num_batches, 1),
                             ("batch_size", batch_size, 1)):
    if value < least:
      raise UserError(f"{name}={value} must be >= {least}.")
  if split not in SPLITS:
    raise UserError(f"Unknown split {split!r}. Valid choices: "
                    f"{', '.join(map(repr, SPLITS))}.")
  tokens = task.splits[split]
  if len(tokens) < seq_len + 1:
    raise UserError(f"seq_len={seq_len} needs windows of {seq_len + 1} "
                    f"characters; the {split!r} split has {len(tokens)}.")
  cell = task.config.model.cell
  model = task.model
  norms, losses, check_err = [], [], None
  for b in range(num_batches):
    inputs, targets = text.random_windows(tokens, batch_size, seq_len, seed,
                                          b)
    if check and b == 0:
      check_err = check_matches_model(model, params, jnp.asarray(inputs[:2]))
      logging.info("Step-by-step logits match the model's (max |diff| "
                   "%.2g).", check_err)
    batch_losses, grads = state_gradients(model, params, jnp.asarray(inputs),
                                          jnp.asarray(targets))
    norms.append(window_norms(grads, cell))
    losses.append(np.asarray(batch_losses))
  per_layer = []
  for l in range(len(norms[0])):
    layer = {}
    for part in cell_class(cell).carry_names:
      n = np.concatenate([batch[l][part] for batch in norms], axis=1)  # [T, N]
      with np.errstate(divide="ignore"):
        geomean = np.exp(np.mean(np.log(n), axis=1))
      layer[part] = {"mean": n.mean(axis=1).tolist(),
                     "geomean": geomean.tolist(),
                     "zeros": int(np.sum(n == 0))}
    per_layer.append(layer)
  top = per_layer[-1]["h"]
  return {
      "ratio": _ratio(top["mean"]),
      "ratio_geomean": _ratio(top["geomean"]),
      "ratio_per_layer": [_ratio(l["h"]["mean"]) for l in per_layer],
      "last_step_loss": float(np.mean(np.concatenate(losses))),
      # Max |step-by-step logits - model's logits| on two windows; None if
      # not checked.
      "check_max_abs_diff": check_err,
      "layers": per_layer,
      "windows": num_batches * batch_size,
      "seq_len": seq_len, "num_batches": num_batches,
      "batch_size": batch_size, "split": split, "seed": seed,
  }


def _ratio(norms: list[float]) -> float:
  """‖∂L_T/∂h_0‖ / ‖∂L_T/∂h_{T-1}‖."""
  return norms[0] / norms[-1] if norms[-1] > 0 else math.nan


def diagnose(config: ml_collections.ConfigDict | None = None,
             workdir: str | pathlib.Path | None = None, *, label: str = "",
             check: bool = True, **measure_kwargs) -> dict[str, Any]:
  """The whole measurement for one model; see the module docstring."""
  t0 = time.perf_counter()
  config, task, params, source = load(config, workdir)
  c = config.model
  result = measure(task, params, check=check, **measure_kwargs)
  if not label:
    label = f"{c.cell} " + ("init" if source["kind"] == "init"
                            else f"step {source['step']}")
  return {
      "label": label, "cell": c.cell, "source": source,
      "model": {"num_layers": c.num_layers, "hidden_size": c.hidden_size,
                "hidden_sizes": list(c.hidden_sizes),
                "embedding": c.embedding, "embed_dim": c.embed_dim},
      "initialisers": initialisers(c),
      "params": param_summary(params, c.cell, c.num_layers),
      **result,
      "seconds": time.perf_counter() - t0,
      "provenance": metrics_lib.provenance(),
  }


def write(result: dict[str, Any], output_dir: str | pathlib.Path, *,
          append: bool = False) -> tuple[pathlib.Path, pathlib.Path]:
  """Writes the JSON (runs keyed by label) and the plot of all its runs."""
  output_dir = pathlib.Path(output_dir)
  output_dir.mkdir(parents=True, exist_ok=True)
  json_path, png_path = output_dir / JSON_NAME, output_dir / PNG_NAME
  runs = {}
  if append and json_path.exists():
    runs = metrics_lib.read_json(json_path).get("runs", {})
  runs[result["label"]] = result
  metrics_lib.write_json(json_path, {"runs": runs})
  plot(runs, png_path)
  return json_path, png_path


def plot(runs: dict[str, dict[str, Any]], path: pathlib.Path) -> None:
  """Mean ‖∂L_T/∂h_t‖ against t, log scale, of the first and the top layer:
  a colour per cell, dashed at initialisation, solid from a checkpoint."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  colours = {"rnn": "tab:blue", "lstm": "tab:orange", "gru": "tab:green"}
  styles = {"init": ("--", ":", (0, (3, 1, 1, 1))),
            "checkpoint": ("-", "-.", (0, (5, 1)))}
  fig, axes = plt.subplots(1, 2, figsize=(13, 5.5), sharey=True)
  for ax, (title, layer) in zip(axes, (("first layer", 0),
                                       ("top layer (feeds the readout)", -1))):
    seen = {}
    for label in sorted(runs):
      run = runs[label]
      # Further runs of one cell and source (e.g. other initialisers) get
      # other dash patterns in the same colour.
      key = (run["cell"], run["source"]["kind"])
      seen[key] = seen.get(key, -1) + 1
      dashes = styles[key[1]]
      norms = np.asarray(run["layers"][layer]["h"]["mean"])
      norms = np.where(norms > 0, norms, np.nan)  # log scale: no zeros
      ratio = _ratio(run["layers"][layer]["h"]["mean"])
      ax.plot(np.arange(len(norms)), norms, color=colours.get(run["cell"]),
              linestyle=dashes[seen[key] % len(dashes)],
              label=f"{label} (ratio {ratio:.2g})")
    ax.set_yscale("log")
    ax.set_title(f"‖∂L_T/∂h_t‖, {title}")
    ax.set_xlabel("t (the loss is at the last position, t = T-1)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
  axes[0].set_ylabel("mean over windows")
  fig.suptitle("Gradient of the last position's loss with respect to the "
               "hidden state at t")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


# --- Command line. ---------------------------------------------------------


def _define_flags():
  # Defined when run as a command only, so that importing this module (tests)
  # does not clash with other entry points' flags.
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  config_flags.DEFINE_config_file(
      "config", None, "Config file: measure its fresh initialisation (seed "
      "config.seed). With --workdir, overrides the run's config.json.",
      lock_config=True)
  flags.DEFINE_string("workdir", None,
                      "Trained run: measure its newest checkpoint.")
  flags.DEFINE_string("output_dir", None,
                      f"Where to write {JSON_NAME} and {PNG_NAME}.",
                      required=True)
  flags.DEFINE_integer("seq_len", 128, "T: window length.")
  flags.DEFINE_integer("num_batches", 8, "Batches of windows to average over.")
  flags.DEFINE_integer("batch_size", 32, "Windows per batch.")
  flags.DEFINE_string("split", "val", "Split the windows come from.")
  flags.DEFINE_integer("seed", 0, "Seed of the window positions.")
  flags.DEFINE_string("label", "", "Name of this run in the JSON and plot; "
                      "default '<cell> init' or '<cell> step <N>'.")
  flags.DEFINE_bool("append", False, f"Keep the other runs already in "
                    f"<output_dir>/{JSON_NAME} and plot them together.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  cli.setup()
  logging.info("JAX %s on %s", jax.__version__, jax.default_backend())
  result = diagnose(f.config, f.workdir, label=f.label, seq_len=f.seq_len,
                    num_batches=f.num_batches, batch_size=f.batch_size,
                    split=f.split, seed=f.seed)
  json_path, png_path = write(result, f.output_dir, append=f.append)
  top = result["layers"][-1]["h"]["mean"]
  print(f"{result['label']}: ‖∂L_T/∂h_0‖ / ‖∂L_T/∂h_{{T-1}}‖ = "
        f"{top[0]:.3e} / {top[-1]:.3e} = {result['ratio']:.3e} (top layer, "
        f"T={result['seq_len']}, {result['windows']} windows); per layer: "
        + ", ".join(f"{r:.3e}" for r in result["ratio_per_layer"]))
  print(f"Wrote {json_path} and {png_path}.")


def run():
  _define_flags()
  app.run(cli.friendly_errors(main), flags_parser=cli.parse_flags)


if __name__ == "__main__":
  run()
