"""Numerical parity with PyTorch: sparse_adam, every cell and layer.

  python -m benchmarks.parity                       # everything (~4 min, 2 cores)
  python -m benchmarks.parity --cells=gru --impls=scan,natives
  python -m benchmarks.parity --parts=sparse_adam

sparse_adam: `rnnlab.optim.sparse_adam` against `torch.optim.SparseAdam` on
the same embedding table and the same gradients, 8 steps, float64 and
float32; rows no token touched must stay bitwise unchanged in both.

Cells and layers: rnnlab against `torch.nn.RNN` (tanh, relu), `nn.LSTM` and
`nn.GRU` (and their `*Cell`s) given the same weights, drawn as PyTorch
initialises them (U(-1/sqrt(H), 1/sqrt(H)), biases included) with random
initial carries. The loss is a fixed random projection of the outputs and
the final carries; compared are the outputs, the final carries and the
gradients w.r.t. the inputs, the initial carries and every PyTorch weight
(rnnlab's side is differentiated through the map from PyTorch's layout, so
its gradients come out in that layout). Levels:
  cell           one step of the cell (no implementation involved)
  layer          `Recurrent` over the sequence
  reverse        `Recurrent(reverse=True)` against PyTorch on the flipped
                 sequence (outputs flipped back)
  bidirectional  `Bidirectional(merge="concat")` against bidirectional=True
and each layer level under every implementation
(`rnnlab.models.implementations.IMPLEMENTATIONS`: auto, scan, fused, native
and each native_<isa> this CPU executes; cudnn on a GPU only), plus
"scan_unhoisted" (scan with hoist_input_projection=False, the per-step
cell). "runs" names what the layer actually ran (`implementation_for`,
fallbacks included); an implementation the cell's structure rules out
(not in `implementations_for`: fused and native for the reset-before GRU,
cudnn for all but the LSTM) is skipped with the layer's refusal. A native
row fails unless its kernel's custom call is in the compiled program.

Weight map (rnnlab/models/cells.py): gate order is PyTorch's; rnnlab has one
input bias, b_ih + b_hh. The GRU's update gate Z is PyTorch's 1 - z, so its
rows and bias are negated. rnnlab's default GRU is reset-after, PyTorch's
formula n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), with b_hn as
`hidden_candidate_bias`. PyTorch has no reset-before GRU (n = tanh(W_in x +
b_in + W_hn (r * h) + b_hn)): "gru_reset_before" compares it against that
formula written in PyTorch ops over nn.GRU's parameter names.

PASS: every element within float32 tolerance of PyTorch's value, rtol 1e-5
plus an atol of 1e-5 x the largest |value| of that tensor (at least 1e-6),
the rule of tests/helpers.py. Columns: max |error| and the normwise relative
error max|error| / max|value| per group, and the worst error as a fraction
of its tolerance (pass <= 1) with the tensor it is in. Exits 1 if any row
fails. Needs the bench extra (PyTorch 2.13.0 CPU, see README).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from typing import Any

import numpy as np

from benchmarks import harness
# The tests' float32 rule, imported rather than copied: this module runs
# from the repository root (python -m benchmarks.parity), like the tests.
from tests.helpers import FLOAT32_RTOL
from tests.helpers import float32_atol

LEVELS = ("cell", "layer", "reverse", "bidirectional")
PARTS = ("sparse_adam", "recurrent")


@dataclasses.dataclass(frozen=True)
class Case:
  cell: str              # rnnlab cell name
  options: dict          # rnnlab cell fields
  torch: str | None      # torch.nn class (its *Cell for the cell level);
  torch_kwargs: dict     # None: the formula in `ResetBeforeGRU`


CASES = {
    "rnn_tanh": Case("rnn", {"activation": "tanh"}, "RNN",
                     {"nonlinearity": "tanh"}),
    "rnn_relu": Case("rnn", {"activation": "relu"}, "RNN",
                     {"nonlinearity": "relu"}),
    "lstm": Case("lstm", {}, "LSTM", {}),
    "gru": Case("gru", {"reset_after": True}, "GRU", {}),
    "gru_reset_before": Case("gru", {"reset_after": False}, None, {}),
}
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--parts", default=",".join(PARTS))
  p.add_argument("--cells", default=",".join(CASES))
  p.add_argument("--levels", default=",".join(LEVELS))
  p.add_argument("--impls",
                 default="auto,scan,scan_unhoisted,fused,native,natives,cudnn",
                 help="Layer implementations; natives = every native_<isa> "
                 "this CPU executes.")
  p.add_argument("--batch", type=int, default=3)
  p.add_argument("--steps", type=int, default=11, help="Sequence length.")
  p.add_argument("--input", type=int, default=7)
  # 20: one full AVX-512 vector of hidden units and a remainder.
  p.add_argument("--hidden", type=int, default=20)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--threads", type=int, default=2, help="PyTorch threads.")
  return p.parse_args(argv)


def implementations(impls: str) -> list[str]:
  """--impls with "natives" expanded to the variants this CPU runs."""
  from rnnlab.native import build  # pylint: disable=g-import-not-at-top
  out = []
  for name in impls.split(","):
    out += ([f"native_{i}" for i in build.supported_isas()]
            if name == "natives" else [name])
  return list(dict.fromkeys(out))


# --- comparison ---------------------------------------------------------------

@dataclasses.dataclass
class Errors:
  """Worst errors of one group of tensors (outputs, carries or grads)."""
  abs: float = 0.0        # max |actual - expected|
  rel: float = 0.0        # max over tensors of max|error| / max|expected|
  ratio: float = 0.0      # max |error| / (atol + rtol |expected|)
  worst: str = ""         # the tensor with that ratio

  def add(self, other: "Errors") -> "Errors":
    worst = self if self.ratio >= other.ratio else other
    return Errors(max(self.abs, other.abs), max(self.rel, other.rel),
                  worst.ratio, worst.worst)


def compare(actual: dict[str, Any], expected: dict[str, Any]) -> Errors:
  """Errors of `actual` against `expected`, dicts of arrays with the same
  keys, at the float32 rule (rtol 1e-5 + an atol scaled to each tensor)."""
  if actual.keys() != expected.keys():
    raise ValueError(f"{sorted(actual)} != {sorted(expected)}")
  total = Errors()
  for name in expected:
    a = np.asarray(actual[name], np.float64)
    e = np.asarray(expected[name], np.float64)
    if a.shape != e.shape:
      raise ValueError(f"{name}: shape {a.shape} != {e.shape}")
    err = np.abs(a - e)
    tol = float32_atol(e) + FLOAT32_RTOL * np.abs(e)
    ratio = float(np.max(err / tol)) if err.size else 0.0
    if not np.all(np.isfinite(a)):
      ratio = float("inf")
    biggest = float(np.max(np.abs(e))) if e.size else 0.0
    worst_err = float(np.max(err)) if err.size else 0.0
    total = total.add(Errors(worst_err, worst_err / biggest if biggest else
                             worst_err, ratio, name))
  return total


def passed(*groups: Errors) -> bool:
  return all(g.ratio <= 1.0 for g in groups)


# --- weights ------------------------------------------------------------------

def suffixes(level: str) -> tuple[str, ...]:
  """PyTorch's parameter-name suffixes of each direction."""
  return {"cell": ("",), "bidirectional": ("_l0", "_l0_reverse")}.get(
      level, ("_l0",))


def torch_layout_params(case: Case, level: str, d: int, h: int,
                        rng: np.random.Generator) -> dict[str, np.ndarray]:
  """Weights in PyTorch's names and shapes, drawn as PyTorch's
  reset_parameters does: U(-1/sqrt(H), 1/sqrt(H)), biases too."""
  g, k = GATES[case.cell], 1 / np.sqrt(h)
  shapes = {"weight_ih": (g * h, d), "weight_hh": (g * h, h),
            "bias_ih": (g * h,), "bias_hh": (g * h,)}
  return {name + sfx: rng.uniform(-k, k, shape).astype(np.float32)
          for sfx in suffixes(level) for name, shape in shapes.items()}


def rnnlab_cell_params(case: Case, tp: dict[str, Any], sfx: str):
  """One direction of PyTorch-layout weights as an rnnlab cell's params.
  Works on numpy or jax arrays (jax: differentiable, for the gradients)."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  w_ih, w_hh = tp["weight_ih" + sfx], tp["weight_hh" + sfx]
  b_ih, b_hh = tp["bias_ih" + sfx], tp["bias_hh" + sfx]
  if case.cell != "gru":
    return {"input_proj": {"kernel": w_ih.T, "bias": b_ih + b_hh},
            "hidden_proj": {"kernel": w_hh.T}}
  h = w_hh.shape[1]
  # rnnlab's Z is PyTorch's 1 - z: sigmoid(-a) = 1 - sigmoid(a).
  sign = jnp.repeat(jnp.asarray([1.0, -1.0, 1.0], jnp.float32), h)
  w_ih, w_hh = w_ih * sign[:, None], w_hh * sign[:, None]
  b_ih, b_hh = b_ih * sign, b_hh * sign
  rz = slice(0, 2 * h)
  n = slice(2 * h, 3 * h)
  if case.options["reset_after"]:
    # b_hn sits inside r * (W_hn h + b_hn): its own parameter.
    return {"input_proj": {"kernel": w_ih.T, "bias": jnp.concatenate(
        [b_ih[rz] + b_hh[rz], b_ih[n]])},
            "hidden_proj": {"kernel": w_hh.T},
            "hidden_candidate_bias": b_hh[n]}
  return {"input_proj": {"kernel": w_ih.T, "bias": b_ih + b_hh},
          "hidden_proj": {"kernel": w_hh[rz].T},
          "candidate_proj": {"kernel": w_hh[n].T}}


def rnnlab_params(case: Case, level: str, tp: dict[str, Any]):
  """PyTorch-layout weights -> the rnnlab module's params for `level`."""
  cell = lambda sfx: rnnlab_cell_params(case, tp, sfx)
  if level == "cell":
    return cell("")
  if level == "bidirectional":
    return {"forward": {"cell": cell("_l0")},
            "backward": {"cell": cell("_l0_reverse")}}
  return {"cell": cell("_l0")}


def carry_tree(case: Case, level: str, h, c):
  """PyTorch's h, c ([directions, B, H]; [B, H] for a cell) as the rnnlab
  module's carry: H, or (C, H) for the LSTM; a pair for bidirectional."""
  def one(d):
    hd = h if level == "cell" else h[d]
    if case.cell != "lstm":
      return hd
    return (c if level == "cell" else c[d], hd)
  return (one(0), one(1)) if level == "bidirectional" else one(0)


# --- rnnlab -------------------------------------------------------------------

def what_runs(cell, implementation: str) -> str:
  """The implementation a layer of `cell` runs for `implementation`:
  `implementation_for`'s answer, fallbacks included."""
  from rnnlab.models import implementations  # pylint: disable=g-import-not-at-top
  if implementation == "scan_unhoisted":
    return "scan (per-step cell)"
  runs = implementations.implementation_for(cell, implementation)
  if implementations.is_native(runs):
    return f"native_{implementations.native_isa(runs)}"
  return runs


def skip_reason(implementation: str, cell) -> str | None:
  """Why a layer of `cell` cannot run `implementation` here, or None: an
  unknown name or ISA variant, a structural refusal (not in
  `implementations_for(cell)`; the layer's own one-line error), or cudnn
  off a GPU (cudnn is refused where it runs, not by `implementation_for`)."""
  import jax  # pylint: disable=g-import-not-at-top
  from rnnlab.errors import UserError  # pylint: disable=g-import-not-at-top
  from rnnlab.models import implementations  # pylint: disable=g-import-not-at-top
  if implementation == "scan_unhoisted":
    return None
  try:
    implementations.resolve_implementation(implementation, cell.hidden_size)
    if implementation.startswith("native_"):
      implementations.native_isa(implementation)
  except UserError as e:
    return str(e).split(". ")[0]
  if implementation not in implementations.implementations_for(cell):
    try:
      implementations.check_runs(cell, implementation)
    except UserError as e:
      return f"refused: {e}"
  if implementation == "cudnn" and jax.default_backend() != "gpu":
    return "cudnn needs a CUDA GPU"
  return None


def rnnlab_module(case: Case, level: str, implementation: str, h: int):
  from rnnlab.models import cells  # pylint: disable=g-import-not-at-top
  from rnnlab.models import layers  # pylint: disable=g-import-not-at-top
  cell = cells.create_cell(case.cell, h, case.options)
  if level == "cell":
    return cell
  kwargs = dict(implementation=implementation)
  if implementation == "scan_unhoisted":
    kwargs = dict(implementation="scan", hoist_input_projection=False)
  if level == "bidirectional":
    return layers.Bidirectional(cell, merge="concat", **kwargs)
  return layers.Recurrent(cell, reverse=level == "reverse", **kwargs)


def rnnlab_run(case, level, implementation, tp, xs, carry0, cotangents):
  """rnnlab's outputs, final carry and gradients, all as flat dicts in the
  names of `torch_run`'s, plus the compiled program's text."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  h = tp["weight_hh" + suffixes(level)[0]].shape[1]
  module = rnnlab_module(case, level, implementation, h)
  # The map must produce exactly the parameters the module creates.
  init = (module.init(jax.random.key(0), carry0, xs) if level == "cell" else
          module.init(jax.random.key(0), xs, carry0))
  want = jax.tree.map(jnp.shape, init["params"])
  got = jax.tree.map(jnp.shape, rnnlab_params(case, level, tp))
  if want != got:
    raise AssertionError(f"weight map gives {got}, the module has {want}")
  cy, cc = cotangents

  def loss(tp, xs, carry0):
    variables = {"params": rnnlab_params(case, level, tp)}
    if level == "cell":
      carry, ys = module.apply(variables, carry0, xs)
    else:
      carry, ys = module.apply(variables, xs, carry0)
    total = jnp.sum(ys * cy) + sum(jnp.sum(a * b) for a, b in zip(
        jax.tree.leaves(carry), jax.tree.leaves(cc)))
    return total, (ys, carry)

  fn = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))
  args = (jax.tree.map(jnp.asarray, tp), jnp.asarray(xs),
          jax.tree.map(jnp.asarray, carry0))
  program = fn.lower(*args).as_text()
  (_, (ys, carry)), (g_tp, g_xs, g_carry) = fn(*args)
  grads = {"input": g_xs, **flat("carry0", g_carry), **g_tp}
  return {"output": ys}, flat("carry", carry), grads, program


def flat(prefix: str, tree) -> dict[str, Any]:
  """A carry tree as {"carry.0.1": leaf, ...} (bare prefix for one leaf)."""
  import jax  # pylint: disable=g-import-not-at-top
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  if len(leaves) == 1 and not leaves[0][0]:
    return {prefix: leaves[0][1]}
  return {prefix + "".join(f".{k.idx}" for k in path): leaf
          for path, leaf in leaves}


# --- PyTorch ------------------------------------------------------------------

class ResetBeforeGRU:
  """nn.GRU's interface and parameter names, with the reset gate before the
  hidden matmul: n = tanh(W_in x + b_in + W_hn (r * h) + b_hn) (what
  rnnlab's GRUCell(reset_after=False) computes); z as PyTorch's."""

  def __init__(self, torch, params, level):
    self.torch, self.p, self.level = torch, params, level

  def step(self, sfx, x, h):
    t, p = self.torch, self.p
    w_hh, b_hh = p["weight_hh" + sfx], p["bias_hh" + sfx]
    hid = h.shape[-1]
    x_r, x_z, x_n = (x @ p["weight_ih" + sfx].T + p["bias_ih" + sfx]).chunk(
        3, -1)
    h_r, h_z = (h @ w_hh[:2 * hid].T + b_hh[:2 * hid]).chunk(2, -1)
    r, z = t.sigmoid(x_r + h_r), t.sigmoid(x_z + h_z)
    n = t.tanh(x_n + (r * h) @ w_hh[2 * hid:].T + b_hh[2 * hid:])
    return (1 - z) * n + z * h

  def __call__(self, x, h0):
    if self.level == "cell":
      return self.step("", x, h0)
    outs, finals = [], []
    for d, sfx in enumerate(suffixes(self.level)):
      h, ys = h0[d], []
      order = range(x.shape[1])
      for t in (reversed(order) if sfx.endswith("reverse") else order):
        h = self.step(sfx, x[:, t], h)
        ys.append(h)
      if sfx.endswith("reverse"):
        ys = ys[::-1]
      outs.append(self.torch.stack(ys, 1))
      finals.append(h)
    return self.torch.cat(outs, -1), self.torch.stack(finals)


def torch_run(torch, case, level, tp, xs, h0, c0, cotangents):
  """PyTorch's outputs, final carry and gradients, as flat dicts."""
  cy, cc = cotangents
  nn = torch.nn
  if case.torch is None:
    params = {k: torch.tensor(v, requires_grad=True) for k, v in tp.items()}
    model = ResetBeforeGRU(torch, params, level)
  else:
    d, h = tp["weight_ih" + suffixes(level)[0]].shape[1], h0.shape[-1]
    if level == "cell":
      model = getattr(nn, case.torch + "Cell")(d, h, **case.torch_kwargs)
    else:
      model = getattr(nn, case.torch)(
          d, h, batch_first=True, bidirectional=level == "bidirectional",
          **case.torch_kwargs)
    params = dict(model.named_parameters())
    if params.keys() != tp.keys():
      raise AssertionError(f"{sorted(params)} != {sorted(tp)}")
    with torch.no_grad():
      for k, p in params.items():
        p.copy_(torch.from_numpy(tp[k]))
  x = torch.tensor(xs, requires_grad=True)
  h = torch.tensor(h0, requires_grad=True)
  c = torch.tensor(c0, requires_grad=True)
  inputs = x.flip(1) if level == "reverse" else x
  lstm = case.cell == "lstm"
  if level == "cell":
    out = model(inputs, (h, c)) if lstm else model(inputs, h)
    h_n, c_n = out if lstm else (out, None)
    ys = h_n
  else:
    ys, final = model(inputs, (h, c)) if lstm else model(inputs, h)
    h_n, c_n = final if lstm else (final, None)
    if level == "reverse":
      ys = ys.flip(1)
  carry = carry_tree(case, level, h_n, c_n)
  carry_leaves = list(flat("carry", carry).values())
  loss = (ys * torch.from_numpy(cy)).sum() + sum(
      (a * torch.from_numpy(b)).sum()
      for a, b in zip(carry_leaves, flat("c", cc).values()))
  loss.backward()
  grads = {"input": x.grad,
           **flat("carry0", carry_tree(case, level, h.grad, c.grad)),
           **{k: p.grad for k, p in params.items()}}
  np_ = lambda d: {k: v.detach().numpy() for k, v in d.items()}
  return (np_({"output": ys}), np_(flat("carry", carry)), np_(grads))


# --- the recurrent cases ---------------------------------------------------------

def recurrent_rows(torch, args) -> list[dict]:
  from rnnlab.models import cells  # pylint: disable=g-import-not-at-top
  from rnnlab.native import recurrence  # pylint: disable=g-import-not-at-top
  impls = implementations(args.impls)
  b, t, d, h = args.batch, args.steps, args.input, args.hidden
  rows = []
  for name in args.cells.split(","):
    case = CASES[name]
    for level in args.levels.split(","):
      rng = np.random.default_rng([args.seed, list(CASES).index(name),
                                   LEVELS.index(level)])
      tp = torch_layout_params(case, level, d, h, rng)
      dirs = len(suffixes(level))
      xs_shape = (b, d) if level == "cell" else (b, t, d)
      carry_shape = (b, h) if level == "cell" else (dirs, b, h)
      xs = rng.normal(size=xs_shape).astype(np.float32)
      h0 = (0.5 * rng.normal(size=carry_shape)).astype(np.float32)
      c0 = (0.5 * rng.normal(size=carry_shape)).astype(np.float32)
      ys_shape = (b, dirs * h) if level == "cell" else (b, t, dirs * h)
      cy = rng.normal(size=ys_shape).astype(np.float32)
      cc = carry_tree(case, level,
                      rng.normal(size=carry_shape).astype(np.float32),
                      rng.normal(size=carry_shape).astype(np.float32))
      expected = torch_run(torch, case, level, tp, xs, h0, c0, (cy, cc))
      carry0 = carry_tree(case, level, h0, c0)
      cell = cells.create_cell(case.cell, h, case.options)
      for impl in (["-"] if level == "cell" else impls):
        row = dict(case=name, level=level, impl=impl)
        reason = None if impl == "-" else skip_reason(impl, cell)
        if reason:
          rows.append(dict(row, runs="-", result=f"skip: {reason}"))
          continue
        runs = "cell step" if impl == "-" else what_runs(cell, impl)
        out, carry, grads, program = rnnlab_run(
            case, level, "scan" if impl == "-" else impl, tp, xs, carry0,
            (cy, cc))
        errors = [compare(out, expected[0]), compare(carry, expected[1]),
                  compare(grads, expected[2])]
        ok = passed(*errors)
        note = ""
        if runs.startswith("native_"):
          target = recurrence._target(  # pylint: disable=protected-access
              runs.removeprefix("native_"), "fwd")
          if target not in program:
            ok, note = False, f" ({target} not in the program)"
        rows.append(dict(row, runs=runs, errors=errors,
                         result=("PASS" if ok else "FAIL") + note))
        print(format_row(rows[-1]), flush=True)
  return rows


HEADER = ("| case | level | impl | runs | outputs abs / rel | carries abs / rel "
          "| grads abs / rel | worst err/tol (tensor) | result |\n"
          "|---|---|---|---|---|---|---|---|---|")


def format_row(row: dict) -> str:
  cells = [row["case"], row["level"], row["impl"], row["runs"]]
  if "errors" in row:
    cells += [f"{e.abs:.1e} / {e.rel:.1e}" for e in row["errors"]]
    worst = max(row["errors"], key=lambda e: e.ratio)
    cells.append(f"{worst.ratio:.2f} ({worst.worst})")
  else:
    cells += ["-"] * 4
  cells.append(row["result"])
  return "| " + " | ".join(cells) + " |"


# --- sparse_adam ------------------------------------------------------------------

V, E, STEPS = 50, 8, 8
B1, B2, EPS, LR = 0.9, 0.999, 1e-8, 0.05


def sparse_adam_row(torch, dtype: str) -> dict:
  """sparse_adam vs torch.optim.SparseAdam: an embedding table, 8 steps of
  random tokens; a fifth of each batch's tokens get a zero gradient
  (present in PyTorch's sparse gradient, and so moved by its momentum)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from rnnlab import optim  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(7)
  init = rng.normal(size=(V, E)).astype(dtype)
  emb = torch.nn.Embedding(V, E, sparse=True, dtype=getattr(torch, dtype))
  with torch.no_grad():
    emb.weight.copy_(torch.from_numpy(init))
  opt = torch.optim.SparseAdam(emb.parameters(), lr=LR, betas=(B1, B2),
                               eps=EPS)
  tx = optim.sparse_adam(LR, B1, B2, EPS)  # every parameter sparse
  zero_but_present = 0
  with jax.enable_x64(dtype == "float64"):
    params = jnp.asarray(init)
    state = tx.init(params)
    update = jax.jit(tx.update)
    for _ in range(STEPS):
      ids = rng.integers(0, V, size=(4, 5))
      weights = rng.normal(size=(4, 5, E)).astype(dtype)
      weights[0] = 0  # these tokens' rows are present with a zero gradient
      opt.zero_grad()
      loss = (emb(torch.from_numpy(ids)) * torch.from_numpy(weights)).sum()
      loss.backward()
      opt.step()
      grad = np.zeros((V, E), dtype)
      np.add.at(grad, ids, weights)  # d(sum(table[ids] * w)) / d table
      zero_but_present += np.sum(~np.any(grad[np.unique(ids)] != 0, axis=1))
      updates, state = update(jnp.asarray(grad), state, params,
                              token_ids=ids)
      params = optax.apply_updates(params, updates)
    ours = np.asarray(params)
  expected = emb.weight.detach().numpy()
  errors = compare({"table": ours}, {"table": expected})
  if dtype == "float64":
    # Far tighter than float32's rule: sees eps added after the bias
    # correction (optax's place for it) instead of on the raw sqrt(v).
    errors.ratio = errors.abs / 1e-9
  untouched = ~np.any(expected != init, axis=1)
  checks = {
      "dtype kept": ours.dtype == dtype,
      "zero-gradient rows present": zero_but_present > 0,
      "some rows untouched": 0 < untouched.sum() < V,
      "untouched rows bitwise equal":
          np.array_equal(ours[untouched], init[untouched]),
  }
  failed = [k for k, v in checks.items() if not v]
  ok = passed(errors) and not failed
  return dict(case="sparse_adam", dtype=dtype, errors=errors,
              untouched=f"{untouched.sum()}/{V}",
              tolerance="abs 1e-9" if dtype == "float64" else "float32 rule",
              result=("PASS" if ok else "FAIL") +
              (f" ({', '.join(failed)})" if failed else ""))


def format_adam_row(row: dict) -> str:
  e = row["errors"]
  return (f"| {row['case']} | {row['dtype']} | {STEPS} | {e.abs:.1e} | "
          f"{e.rel:.1e} | {row['tolerance']} | {e.ratio:.2f} | "
          f"{row['untouched']} | {row['result']} |")


# --- main -------------------------------------------------------------------------

def cpu_signature_line() -> str:
  """Vendor, family and model from /proc/cpuinfo (the model name alone,
  "AMD EPYC", does not say which generation)."""
  fields = {}
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
  except OSError:
    return "# CPU: unknown"
  return (f"# CPU: {fields.get('model name', '?')} (family "
          f"{fields.get('cpu family', '?')}, model {fields.get('model', '?')})")


def main(argv=None) -> int:
  args = parse_args(argv)
  from rnnlab import cli  # pylint: disable=g-import-not-at-top
  cli.setup()
  import jax  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  from benchmarks import train_throughput  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(args.threads)
  start = time.perf_counter()
  print(f"# {time.strftime('%Y-%m-%d %H:%M')} | {harness.machine()} | "
        f"jax {jax.__version__} ({jax.default_backend()}) | torch "
        f"{torch.__version__} ({args.threads} threads) | python "
        f"{sys.version.split()[0]}")
  print(cpu_signature_line())
  print(train_throughput.cpu_line())
  failed = 0
  parts = args.parts.split(",")
  if "sparse_adam" in parts:
    print("\n| case | dtype | steps | max abs err | rel err | tolerance | "
          "err/tol | rows untouched | result |\n|---|---|---|---|---|---|---|"
          "---|---|")
    for dtype in ("float64", "float32"):
      row = sparse_adam_row(torch, dtype)
      print(format_adam_row(row), flush=True)
      failed += not row["result"].startswith("PASS")
  if "recurrent" in parts:
    print(f"\n# batch {args.batch}, {args.steps} steps, input {args.input}, "
          f"hidden {args.hidden}, seed {args.seed}; rel = max|err| / "
          f"max|value| per tensor; err/tol <= 1 passes")
    print(HEADER, flush=True)
    rows = recurrent_rows(torch, args)
    for row in rows:
      if row["result"].startswith("skip"):
        print(format_row(row))
    failed += sum(r["result"].startswith("FAIL") for r in rows)
    ran = sum("errors" in r for r in rows)
    print(f"\n# {ran} recurrent rows run, "
          f"{sum(r['result'].startswith('skip') for r in rows)} skipped")
  print(f"# {failed} failed; {time.perf_counter() - start:.0f} s")
  return 1 if failed else 0


if __name__ == "__main__":
  os.environ.setdefault("RNNLAB_OFFLINE", "1")
  sys.exit(main())
