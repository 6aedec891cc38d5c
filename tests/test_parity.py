"""benchmarks/parity.py's pieces that need no PyTorch: the weight map from
PyTorch's layout, checked against PyTorch's documented cell equations
transcribed in numpy, and the pass/fail rule. (The comparison with torch
itself is `python -m benchmarks.parity`, bench extra.)"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import parity
from tests.helpers import assert_float32_close

B, D, H = 3, 5, 4


def sigmoid(a):
  return 1 / (1 + np.exp(-a))


def torch_cell_equations(name, p, h, c, x):
  """One step of torch.nn.RNNCell / LSTMCell / GRUCell as PyTorch's docs
  write it, on its parameters (float64); gru_reset_before: the same GRU
  with r applied to h before W_hn. -> (h', c')."""
  p = {k: v.astype(np.float64) for k, v in p.items()}
  gi = x @ p["weight_ih"].T + p["bias_ih"]
  gh = h @ p["weight_hh"].T + p["bias_hh"]
  if name.startswith("rnn"):
    a = gi + gh
    return (np.tanh(a) if name == "rnn_tanh" else np.maximum(a, 0)), None
  if name == "lstm":
    i, f, g, o = np.split(gi + gh, 4, axis=-1)
    c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    return sigmoid(o) * np.tanh(c), c
  i_r, i_z, i_n = np.split(gi, 3, axis=-1)
  h_r, h_z, h_n = np.split(gh, 3, axis=-1)
  r, z = sigmoid(i_r + h_r), sigmoid(i_z + h_z)
  if name == "gru":
    n = np.tanh(i_n + r * h_n)
  else:
    n = np.tanh(i_n + (r * h) @ p["weight_hh"][2 * H:].T +
                p["bias_hh"][2 * H:])
  return (1 - z) * n + z * h, None


@pytest.mark.parametrize("name", sorted(parity.CASES))
def test_torch_weights_mapped_into_rnnlab_give_torchs_step(name):
  case = parity.CASES[name]
  rng = np.random.default_rng(3)
  # Larger than PyTorch's init, so that a misplaced bias or sign shows.
  tp = {k: 3 * v for k, v in parity.torch_layout_params(
      case, "cell", D, H, rng).items()}
  x = rng.normal(size=(B, D))
  h, c = rng.normal(size=(2, B, H))
  cell = parity.rnnlab_module(case, "cell", "scan", H)
  carry = parity.carry_tree(case, "cell", jnp.asarray(h, jnp.float32),
                            jnp.asarray(c, jnp.float32))
  new_carry, y = cell.apply({"params": parity.rnnlab_params(case, "cell", tp)},
                            carry, jnp.asarray(x, jnp.float32))
  want_h, want_c = torch_cell_equations(name, tp, h, c, x)
  assert_float32_close(y, want_h)
  assert_float32_close(new_carry,
                       parity.carry_tree(case, "cell", want_h, want_c))


@pytest.mark.parametrize("name", sorted(parity.CASES))
def test_map_gives_exactly_the_bidirectional_layers_parameters(name):
  case = parity.CASES[name]
  tp = parity.torch_layout_params(case, "bidirectional", D, H,
                                  np.random.default_rng(0))
  assert sorted(tp) == sorted(
      f"{w}{s}" for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
      for s in ("_l0", "_l0_reverse"))
  module = parity.rnnlab_module(case, "bidirectional", "scan", H)
  xs = jnp.zeros((B, 2, D))
  carry = parity.carry_tree(case, "bidirectional", jnp.zeros((2, B, H)),
                            jnp.zeros((2, B, H)))
  shapes = lambda t: jax.tree.map(jnp.shape, t)
  assert (shapes(parity.rnnlab_params(case, "bidirectional", tp)) ==
          shapes(module.init(jax.random.key(0), xs, carry)["params"]))


def test_compare_applies_the_float32_rule_per_tensor():
  big = np.array([1000.0, 0.0])  # atol: 1e-5 x the tensor's largest value
  small = np.array([1.0, 0.0])
  ok = parity.compare({"a": big + [0, 5e-3], "b": small + [4e-6, 0]},
                      {"a": big, "b": small})
  assert parity.passed(ok) and ok.worst == "a"
  assert ok.abs == pytest.approx(5e-3) and ok.ratio == pytest.approx(0.5)
  # The same error next to values of 1 is a failure.
  bad = parity.compare({"a": big, "b": small + [0, 5e-3]},
                       {"a": big, "b": small})
  assert not parity.passed(bad) and bad.worst == "b"
  assert bad.rel == pytest.approx(5e-3)
  assert not parity.passed(parity.compare({"a": [np.nan]}, {"a": [np.nan]}))


def test_natives_expand_to_the_variants_this_cpu_runs():
  from rnnlab.native import build  # pylint: disable=g-import-not-at-top
  assert parity.implementations("scan,natives,scan") == (
      ["scan"] + [f"native_{i}" for i in build.supported_isas()])
