"""Cells against their textbook equations in plain numpy; layers against loops."""
from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab.models import cells
from rnnlab.models import implementations
from rnnlab.models import layers
from rnnlab.native import build as native_build
from rnnlab.native import recurrence
from tests.helpers import BFLOAT16_RTOL
from tests.helpers import assert_bfloat16_close
from tests.models.helpers import randomize

# The native kernels' instruction-set variants this CPU executes: only
# those are collected.
NATIVE = [f"native_{isa}" for isa in native_build.supported_isas()]

B, D, H, T = 3, 5, 4, 7


def sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))



def blocks(w, n):
  """Splits a fused [in, n*H] kernel (or [n*H] bias) into n per-gate parts."""
  return np.split(np.asarray(w, np.float64), n, axis=-1)


def numpy_rnn(p, h, x, phi):
  # H_t = φ(W_xh x_t + W_hh H_{t-1} + b)
  h = phi(x @ p["input_proj"]["kernel"] + h @ p["hidden_proj"]["kernel"] +
          p["input_proj"]["bias"])
  return h, h


def numpy_lstm(p, carry, x):
  c, h = carry
  wxi, wxf, wxc, wxo = blocks(p["input_proj"]["kernel"], 4)
  bi, bf, bc, bo = blocks(p["input_proj"]["bias"], 4)
  whi, whf, whc, who = blocks(p["hidden_proj"]["kernel"], 4)
  i = sigmoid(x @ wxi + h @ whi + bi)
  f = sigmoid(x @ wxf + h @ whf + bf)
  o = sigmoid(x @ wxo + h @ who + bo)
  c_tilde = np.tanh(x @ wxc + h @ whc + bc)
  c = f * c + i * c_tilde
  h = o * np.tanh(c)
  return (c, h), h


def numpy_gru(p, h, x, reset_after):
  wxr, wxz, wxh = blocks(p["input_proj"]["kernel"], 3)
  br, bz, bh = blocks(p["input_proj"]["bias"], 3)
  if reset_after:
    whr, whz, whh = blocks(p["hidden_proj"]["kernel"], 3)
  else:
    whr, whz = blocks(p["hidden_proj"]["kernel"], 2)
    whh = np.asarray(p["candidate_proj"]["kernel"], np.float64)
  r = sigmoid(x @ wxr + h @ whr + br)
  z = sigmoid(x @ wxz + h @ whz + bz)
  if reset_after:
    h_tilde = np.tanh(x @ wxh + r * (h @ whh + p["hidden_candidate_bias"]) + bh)
  else:
    h_tilde = np.tanh(x @ wxh + (r * h) @ whh + bh)
  h = (1 - z) * h + z * h_tilde
  return h, h


CASES = {
    "rnn_tanh": (dict(name="rnn", activation="tanh"),
                 lambda p, c, x: numpy_rnn(p, c, x, np.tanh)),
    "rnn_relu": (dict(name="rnn", activation="relu"),
                 lambda p, c, x: numpy_rnn(p, c, x, lambda a: np.maximum(a, 0))),
    "lstm": (dict(name="lstm"), numpy_lstm),
    "gru_reset_after": (dict(name="gru", reset_after=True),
                        lambda p, c, x: numpy_gru(p, c, x, True)),
    "gru_reset_before": (dict(name="gru", reset_after=False),
                         lambda p, c, x: numpy_gru(p, c, x, False)),
}


def make(case, dtype="float32"):
  spec, reference = CASES[case]
  options = {k: v for k, v in spec.items() if k != "name"}
  return cells.create_cell(spec["name"], H, options,
                           dtype=jnp.dtype(dtype)), reference


def to_np(tree):
  return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def random_carry(cell, rng):
  return jax.tree.map(lambda z: jnp.asarray(rng.normal(size=z.shape), z.dtype),
                      cell.initialize_carry((B,)))


def assert_matches_numpy(cell, reference, seed: int):
  """One step of `cell` on random inputs, carry and parameters equals
  `reference(params, carry, x) -> (carry, y)` in float64 numpy."""
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.normal(size=(B, D)), jnp.float32)
  carry = random_carry(cell, rng)
  params = randomize(cell.init(jax.random.key(0), carry, x)["params"])
  new_carry, y = cell.apply({"params": params}, carry, x)
  ref_carry, ref_y = reference(to_np(params), to_np(carry), np.asarray(x))
  np.testing.assert_allclose(y, ref_y, atol=1e-5, rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5,
                                                       rtol=1e-5),
               new_carry, ref_carry)


@pytest.mark.parametrize("case", sorted(CASES))
def test_cell_matches_numpy_equations(case):
  assert_matches_numpy(*make(case), seed=1)


@pytest.mark.parametrize("case,shapes", [
    ("rnn_tanh", {"input_proj": (D, H), "hidden_proj": (H, H)}),
    ("lstm", {"input_proj": (D, 4 * H), "hidden_proj": (H, 4 * H)}),
    ("gru_reset_after", {"input_proj": (D, 3 * H), "hidden_proj": (H, 3 * H)}),
    ("gru_reset_before", {"input_proj": (D, 3 * H), "hidden_proj": (H, 2 * H),
                          "candidate_proj": (H, H)}),
])
def test_gate_weights_are_fused(case, shapes):
  cell, _ = make(case)
  params = cell.init(jax.random.key(0), cell.initialize_carry((B,)),
                     jnp.zeros((B, D)))["params"]
  got = {k: v["kernel"].shape for k, v in params.items()
         if isinstance(v, dict) and "kernel" in v}
  assert got == shapes


@pytest.mark.parametrize("forget_bias", [1.0, 0.5])
def test_lstm_forget_bias_init(forget_bias):
  cell = cells.create_cell("lstm", H, {"forget_bias": forget_bias})
  params = cell.init(jax.random.key(0), cell.initialize_carry((B,)),
                     jnp.zeros((B, D)))["params"]
  i, f, g, o = np.split(np.asarray(params["input_proj"]["bias"]), 4)
  np.testing.assert_array_equal(f, forget_bias)
  for other in (i, g, o):
    np.testing.assert_array_equal(other, 0.0)


def test_recurrent_kernel_blocks_are_orthogonal():
  cell = cells.create_cell("lstm", 8)
  params = cell.init(jax.random.key(0), cell.initialize_carry((2,)),
                     jnp.zeros((2, 3)))["params"]
  for block in blocks(params["hidden_proj"]["kernel"], 4):
    np.testing.assert_allclose(block.T @ block, np.eye(8), atol=1e-5)


def test_unknown_cell_lists_valid_names():
  with pytest.raises(ValueError, match=r"Unknown cell 'gur'.*'gru', 'lstm', "
                     r"'rnn'"):
    cells.create_cell("gur", H)


def test_unknown_activation_lists_valid_names():
  with pytest.raises(ValueError, match=r"'sigmoid'.*'relu', 'tanh'"):
    cells.create_cell("rnn", H, {"activation": "sigmoid"})


def _sequence_inputs(case, hoist, unroll=1):
  cell, _ = make(case)
  layer = layers.Recurrent(cell, hoist_input_projection=hoist, unroll=unroll)
  xs = jnp.asarray(np.random.default_rng(2).normal(size=(B, T, D)),
                   jnp.float32)
  return cell, layer, xs


@pytest.mark.parametrize("case", sorted(CASES))
def test_scan_equals_python_loop_of_steps(case):
  cell, layer, xs = _sequence_inputs(case, hoist=True)
  params = randomize(layer.init(jax.random.key(0), xs)["params"])
  carry, ys = layer.apply({"params": params}, xs)
  step_carry = cell.initialize_carry((B,))
  for t in range(T):
    step_carry, y = cell.apply({"params": params["cell"]}, step_carry,
                               xs[:, t])
    np.testing.assert_allclose(ys[:, t], y, atol=1e-5, rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5),
               carry, step_carry)


@pytest.mark.parametrize("case", sorted(CASES))
def test_hoisted_projection_equals_per_step(case):
  _, hoisted, xs = _sequence_inputs(case, hoist=True)
  _, per_step, _ = _sequence_inputs(case, hoist=False, unroll=3)
  p_hoisted = hoisted.init(jax.random.key(0), xs)["params"]
  p_per_step = per_step.init(jax.random.key(0), xs)["params"]
  assert (jax.tree.map(jnp.shape, p_hoisted) ==
          jax.tree.map(jnp.shape, p_per_step))
  params = randomize(p_hoisted)
  out_h = hoisted.apply({"params": params}, xs)
  out_p = per_step.apply({"params": params}, xs)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5,
                                                       rtol=1e-5),
               out_h, out_p)


def test_reverse_runs_backwards_in_time():
  cell, _ = make("gru_reset_after")
  xs = jnp.asarray(np.random.default_rng(3).normal(size=(B, T, D)),
                   jnp.float32)
  forward = layers.Recurrent(cell)
  backward = layers.Recurrent(cell, reverse=True)
  params = forward.init(jax.random.key(0), xs)["params"]
  _, ys_back = backward.apply({"params": params}, xs)
  _, ys_fwd_on_flipped = forward.apply({"params": params}, xs[:, ::-1])
  np.testing.assert_allclose(ys_back, ys_fwd_on_flipped[:, ::-1], atol=1e-5)


@pytest.mark.parametrize("cell_name", ["rnn", "lstm", "gru"])
def test_carries_stay_float32_with_bfloat16_params(cell_name):
  stack = layers.RecurrentStack(cell_name, 8, num_layers=2,
                                dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
  xs = jnp.ones((2, 5, 3), jnp.bfloat16)
  variables = stack.init(jax.random.key(0), xs)
  assert {p.dtype for p in jax.tree.leaves(variables)} == {
      jnp.dtype(jnp.bfloat16)}
  carries, ys = stack.apply(variables, xs)
  assert {c.dtype for c in jax.tree.leaves(carries)} == {
      jnp.dtype(jnp.float32)}
  assert ys.shape == (2, 5, 8)


def test_stack_dropout_only_in_training():
  stack = layers.RecurrentStack("gru", 8, num_layers=3, dropout_rate=0.5,
                                cell_options=flax.core.FrozenDict())
  xs = jnp.ones((2, 5, 3))
  variables = stack.init(jax.random.key(0), xs)
  _, eval_a = stack.apply(variables, xs)
  _, eval_b = stack.apply(variables, xs)
  np.testing.assert_array_equal(eval_a, eval_b)
  _, train_a = stack.apply(variables, xs, train=True,
                           rngs={"dropout": jax.random.key(1)})
  _, train_b = stack.apply(variables, xs, train=True,
                           rngs={"dropout": jax.random.key(2)})
  assert not np.allclose(train_a, eval_a)
  assert not np.allclose(train_a, train_b)
  assert len(variables["params"]) == 3


def _grads(module, variables, xs, carry):
  """Gradients of a fixed function of outputs and final carry."""
  def loss(v, xs, carry):
    carry, ys = module.apply(v, xs, carry)
    weights = jnp.linspace(-1, 1, ys.size).reshape(ys.shape)
    return jnp.sum(ys * weights) + sum(
        jnp.sum(c**2) for c in jax.tree.leaves(carry))
  return jax.grad(loss, argnums=(0, 1, 2))(variables, xs, carry)


def _assert_trees_close(a, b, tol=1e-5):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, atol=tol,
                                                       rtol=tol), a, b)


def assert_native_ran(layer, variables, xs, carry, implementation, *,
                      expected=True):
  """That the layer's values and gradients run the native kernels of this
  variant (their custom calls are in the program), so that a comparison
  is not nn.scan against nn.scan."""
  if not implementations.is_native(implementation):
    return
  isa = implementations.native_isa(implementation)
  if expected:
    assert recurrence.unavailable(isa) is None  # CI has a compiler
  program = jax.jit(lambda v, x, c: _grads(layer, v, x, c)).lower(
      variables, xs, carry).as_text()
  for direction in ("fwd", "bwd"):
    target = f"rnnlab_recurrence_{direction}_{isa}"
    assert (target in program) == expected, (target, expected)


# bfloat16 forward in time only: reversing is a flip of the inputs,
# whatever the dtype.
@pytest.mark.parametrize("reverse,dtype", [(False, "float32"),
                                           (True, "float32"),
                                           (False, "bfloat16")])
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("implementation", ["fused"] + NATIVE)
def test_kernels_equal_scan_values_and_gradients(implementation, case,
                                                 reverse, dtype):
  """The custom-VJP kernels against nn.scan + XLA autodiff, to 1e-5; with
  a bfloat16 compute dtype (float32 parameters and carries) to the
  bfloat16 tolerance, where native (float32 kernels) falls back."""
  cell, _ = make(case, dtype)
  scan = layers.Recurrent(cell, reverse=reverse, implementation="scan")
  kernel = layers.Recurrent(cell, reverse=reverse,
                            implementation=implementation)
  rng = np.random.default_rng(4)
  xs = jnp.asarray(rng.normal(size=(B, T, D)), jnp.float32)
  if not cell.supports_fused():
    # The reset-before GRU has no fused form: asked for by name, refused.
    with pytest.raises(layers.UserError, match=(
        f"implementation='{implementation}' cannot run the 'gru' cell "
        r"\(GRUCell: .*\)\. Implementations that can: 'auto', 'scan'\.")):
      kernel.init(jax.random.key(0), xs)
    return
  variables = randomize(scan.init(jax.random.key(0), xs))
  assert (jax.tree.map(jnp.shape, kernel.init(jax.random.key(0), xs)) ==
          jax.tree.map(jnp.shape, variables))
  carry = random_carry(cell, rng)
  if dtype == "bfloat16" and implementations.is_native(implementation):
    # The native kernels are float32: the layer runs the scan instead (with
    # a warning), so there is nothing to compare.
    assert implementations.implementation_for(cell, implementation) == "scan"
    assert_native_ran(kernel, variables, xs, carry, implementation,
                      expected=False)
    return
  assert_native_ran(kernel, variables, xs, carry, implementation)
  if dtype == "float32":
    _assert_trees_close(scan.apply(variables, xs, carry),
                        kernel.apply(variables, xs, carry))
    _assert_trees_close(_grads(scan, variables, xs, carry),
                        _grads(kernel, variables, xs, carry))
    return
  values = kernel.apply(variables, xs, carry)
  assert {c.dtype for c in jax.tree.leaves(values[0])} == {
      jnp.dtype(jnp.float32)}
  assert_bfloat16_close(values, scan.apply(variables, xs, carry))
  # The weight gradients are sums over T*B steps and examples, which the
  # kernel rounds to bfloat16 once and the scan step by step (its bias
  # gradient is the less accurate): with their cancellations they differ
  # by a few percent of their largest element.
  assert_bfloat16_close(_grads(kernel, variables, xs, carry),
                        _grads(scan, variables, xs, carry),
                        rtol=4 * BFLOAT16_RTOL)


@pytest.mark.parametrize("case", ["rnn_relu", "lstm", "gru_reset_after"])
@pytest.mark.parametrize("implementation", NATIVE)
def test_native_kernel_with_threads_and_tiles(case, implementation):
  """Sizes that exercise the native kernel's thread split (hidden 40: units
  32 + 8 over two threads, not multiples of any variant's column block)
  and its register tiles (batch 7: whole tiles and a remainder in every
  variant), to 1e-5."""
  spec, _ = CASES[case]
  options = {k: v for k, v in spec.items() if k != "name"}
  cell = cells.create_cell(spec["name"], 40, options)
  batch, steps = 7, 9
  scan = layers.Recurrent(cell, implementation="scan")
  native = layers.Recurrent(cell, implementation=implementation)
  rng = np.random.default_rng(6)
  xs = jnp.asarray(rng.normal(size=(batch, steps, D)), jnp.float32)
  # N(0, 0.15²): at hidden 40 the helper's N(0, 0.5²) makes the relu RNN
  # grow to 1e8 within 9 steps.
  variables = jax.tree.map(lambda p: 0.3 * p,
                           randomize(scan.init(jax.random.key(0), xs)))
  carry = jax.tree.map(
      lambda z: jnp.asarray(rng.normal(size=z.shape), z.dtype),
      cell.initialize_carry((batch,)))
  assert_native_ran(native, variables, xs, carry, implementation)
  _assert_trees_close(scan.apply(variables, xs, carry),
                      native.apply(variables, xs, carry))
  _assert_trees_close(_grads(scan, variables, xs, carry),
                      _grads(native, variables, xs, carry))


@pytest.mark.parametrize("cell_name", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("num_layers", [2, 3])
def test_wavefront_equals_layer_by_layer(cell_name, num_layers):
  kwargs = dict(cell=cell_name, hidden_size=H, num_layers=num_layers,
                cell_options=flax.core.FrozenDict(), implementation="scan")
  by_layer = layers.RecurrentStack(schedule="layer_by_layer", **kwargs)
  wavefront = layers.RecurrentStack(schedule="wavefront", **kwargs)
  rng = np.random.default_rng(5)
  xs = jnp.asarray(rng.normal(size=(B, T, D)), jnp.float32)
  variables = randomize(by_layer.init(jax.random.key(0), xs))
  carries = jax.tree.map(
      lambda z: jnp.asarray(rng.normal(size=z.shape), jnp.float32),
      by_layer.initialize_carry(B))
  _assert_trees_close(by_layer.apply(variables, xs, carries),
                      wavefront.apply(variables, xs, carries))
  _assert_trees_close(_grads(by_layer, variables, xs, carries),
                      _grads(wavefront, variables, xs, carries))


def test_wavefront_dropout_is_on_in_training_only():
  stack = layers.RecurrentStack("gru", H, num_layers=2, dropout_rate=0.5,
                                cell_options=flax.core.FrozenDict(),
                                schedule="wavefront", implementation="scan")
  xs = jnp.ones((B, T, D))
  variables = stack.init(jax.random.key(0), xs)
  _, eval_ys = stack.apply(variables, xs)
  _, eval_ref = stack.clone(schedule="layer_by_layer").apply(variables, xs)
  np.testing.assert_allclose(eval_ys, eval_ref, atol=1e-5)
  _, a = stack.apply(variables, xs, train=True,
                     rngs={"dropout": jax.random.key(1)})
  _, b = stack.apply(variables, xs, train=True,
                     rngs={"dropout": jax.random.key(2)})
  assert not np.allclose(a, eval_ys) and not np.allclose(a, b)


def test_auto_implementation_on_the_cpu():
  assert implementations.resolve_implementation("auto", 256) == "native"
  assert implementations.resolve_implementation("scan", 1024) == "scan"
  # Without the native kernel: the per-step scan below hidden 512.
  assert implementations.cpu_fallback(256) == "scan"
  assert implementations.cpu_fallback(512) == "fused"
  with pytest.raises(ValueError, match=r"'auto', 'cudnn', 'fused', 'native',"
                     r" 'native_avx2', 'native_avx512', 'native_generic', "
                     r"'scan'"):
    implementations.resolve_implementation("cuda", 256)


def _reference_lstm(x, h0, c0, packed, seq_lengths, *, input_size,
                    hidden_size, num_layers, dropout, bidirectional):
  """jax.experimental.rnn.lstm's signature over JAX's plain-XLA reference:
  unpacking with JAX's own layout checks how we pack for cuDNN."""
  from jax.experimental import rnn
  w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(
      packed, input_size, hidden_size, num_layers, bidirectional)
  return rnn.lstm_ref(x, h0, c0, w_ih, w_hh, b_ih, b_hh, seq_lengths,
                      input_size, hidden_size, num_layers, dropout,
                      bidirectional)


@pytest.mark.parametrize("reverse", [False, True])
def test_cudnn_packing_equals_scan_values_and_gradients(monkeypatch, reverse):
  """The cuDNN path's weight packing, run through JAX's reference LSTM on
  CPU (the kernel itself is checked on a GPU: python -m rnnlab.gpu_check)."""
  monkeypatch.setattr(implementations, "CUDNN_LSTM_FN", _reference_lstm)
  cell, _ = make("lstm")
  scan = layers.Recurrent(cell, reverse=reverse, implementation="scan")
  cudnn = layers.Recurrent(cell, reverse=reverse, implementation="cudnn")
  rng = np.random.default_rng(6)
  xs = jnp.asarray(rng.normal(size=(B, T, D)), jnp.float32)
  variables = randomize(scan.init(jax.random.key(0), xs))
  assert (jax.tree.map(jnp.shape, cudnn.init(jax.random.key(0), xs)) ==
          jax.tree.map(jnp.shape, variables))
  carry = random_carry(cell, rng)
  _assert_trees_close(scan.apply(variables, xs, carry),
                      cudnn.apply(variables, xs, carry))
  _assert_trees_close(_grads(scan, variables, xs, carry),
                      _grads(cudnn, variables, xs, carry))


@pytest.mark.parametrize("case, message", [
    ("gru_reset_after", r"'cudnn' cannot run the 'gru' cell \(GRUCell: "
     r"cuDNN runs the LSTM only\)\. Implementations that can: 'auto', "
     r"'scan', 'fused', 'native'"),
    ("lstm", "needs a CUDA GPU, but JAX's backend is 'cpu'")])
def test_cudnn_refuses_other_cells_and_cpu(case, message):
  cell, _ = make(case)
  layer = layers.Recurrent(cell, implementation="cudnn")
  with pytest.raises(layers.UserError, match=message):
    layer.init(jax.random.key(0), jnp.ones((B, T, D)))


# --- Cells defined outside rnnlab: one definition, every implementation. ---


class MinimalGatedCell(cells.RecurrentCell):
  """U = σ(xp_u + hp_u); H_t = (1 - U) ∘ H_{t-1} + U ∘ tanh(xp_c + hp_c)."""

  num_gates = 2
  gate_names = ("u", "c")

  def gate(self, h, xp, hp, extras):
    del extras
    xu, xc = jnp.split(xp, 2, axis=-1)
    hu, hc = jnp.split(hp, 2, axis=-1)
    u = jax.nn.sigmoid(xu + hu)
    h = (1 - u) * h + u * jnp.tanh(xc + hc)
    return h, h


class ScaledRecurrenceLSTM(cells.LSTMCell):
  """Overrides the general form: its step is not the LSTM gate any more."""

  def recurrence(self, carry, xp):
    carry, y = super().recurrence(carry, xp)
    return carry, 0.5 * y


class LeakyLSTM(cells.LSTMCell):
  """A new gate on a built-in's parameters: fused form, no native kernel."""

  def gate(self, carry, xp, hp, extras):
    (c, h), _ = super().gate(carry, xp, hp, extras)
    return (c, 0.9 * h), 0.9 * h


def numpy_mgu(p, h, x):
  wxu, wxc = blocks(p["input_proj"]["kernel"], 2)
  bu, bc = blocks(p["input_proj"]["bias"], 2)
  whu, whc = blocks(p["hidden_proj"]["kernel"], 2)
  u = sigmoid(x @ wxu + h @ whu + bu)
  h = (1 - u) * h + u * np.tanh(x @ wxc + h @ whc + bc)
  return h, h


def test_a_user_cell_in_the_fused_form_matches_its_equations():
  assert_matches_numpy(MinimalGatedCell(H), numpy_mgu, seed=7)


@pytest.mark.parametrize("cell_cls, fused", [
    (MinimalGatedCell, True), (LeakyLSTM, True),
    (ScaledRecurrenceLSTM, False)])
def test_user_cells_run_where_their_structure_allows(cell_cls, fused):
  """"fused" runs the cell's own gate (values and gradients equal scan's);
  an implementation the structure rules out is refused by name."""
  cell = cell_cls(H)
  assert cell.supports_fused() == fused
  assert implementations.native_cell_code(cell) is None  # no kernel of its own
  expected = ("auto", "scan", "fused") if fused else ("auto", "scan")
  assert implementations.implementations_for(cell) == expected
  rng = np.random.default_rng(8)
  xs = jnp.asarray(rng.normal(size=(B, T, D)), jnp.float32)
  scan = layers.Recurrent(cell, implementation="scan")
  variables = randomize(scan.init(jax.random.key(0), xs))
  carry = random_carry(cell, rng)
  # The step runs the override: scan differs from the parent cell's.
  if cell_cls is not MinimalGatedCell:
    parent = layers.Recurrent(cells.LSTMCell(H), implementation="scan")
    assert not np.allclose(scan.apply(variables, xs, carry)[1],
                           parent.apply(variables, xs, carry)[1])
  for implementation in ["fused"] + NATIVE + ["cudnn"]:
    layer = layers.Recurrent(cell, implementation=implementation)
    if implementation in expected:
      _assert_trees_close(scan.apply(variables, xs, carry),
                          layer.apply(variables, xs, carry))
      _assert_trees_close(_grads(scan, variables, xs, carry),
                          _grads(layer, variables, xs, carry))
      continue
    with pytest.raises(layers.UserError, match=(
        f"^model.implementation='{implementation}' cannot run the "
        f"'{cell_cls.__name__}' cell .*Implementations that can: "
        f"{', '.join(map(repr, expected))}\\.")):
      layer.init(jax.random.key(0), xs)
  # "auto" runs what the cell can: never a refusal.
  assert implementations.implementation_for(cell, "auto") in expected
  auto = layers.Recurrent(cell, implementation="auto")
  _assert_trees_close(scan.apply(variables, xs, carry),
                      auto.apply(variables, xs, carry))


def test_auto_rule_picks_among_what_the_cell_can_run():
  assert implementations.resolve_implementation(
      "auto", 512, MinimalGatedCell(512)) == "fused"
  assert implementations.resolve_implementation(
      "auto", 64, MinimalGatedCell(64)) == "scan"
  assert implementations.resolve_implementation(
      "auto", 512, ScaledRecurrenceLSTM(512)) == "scan"
  gru_before = cells.GRUCell(512, reset_after=False)
  assert implementations.implementation_for(gru_before, "auto") == "scan"
  assert implementations.implementation_for(cells.LSTMCell(8),
                                            "auto") == "native"


def test_native_where_unavailable_falls_back():
  """bf16 is not a structural limit: the layer runs `cpu_fallback`'s
  choice (with a warning), as without a compiler."""
  lstm = cells.LSTMCell(8, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
  assert implementations.implementation_for(lstm, "native") == "scan"
  wide = cells.LSTMCell(512, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
  assert implementations.implementation_for(wide, "native") == "fused"
  # Regularised layers run the scan whatever was asked for.
  assert implementations.implementation_for(cells.LSTMCell(8), "fused",
                                            regularized=True) == "scan"


def test_a_general_cell_without_hidden_mask_refuses_recurrent_dropout():
  cell = ScaledRecurrenceLSTM(H)
  layer = layers.Recurrent(cell)
  xs = jnp.ones((B, T, D))
  variables = layer.init(jax.random.key(0), xs)
  with pytest.raises(layers.UserError, match=r"ScaledRecurrenceLSTM\.recurr"
                     r"ence\(carry, xp\) takes no hidden_mask"):
    layer.apply(variables, xs, hidden_mask=jnp.ones((B, H)))


def test_cells_declare_their_gates_and_carry():
  assert cells.LSTMCell.gate_names == ("i", "f", "g", "o")
  assert cells.LSTMCell.carry_names == ("c", "h")
  assert cells.GRUCell.gate_names == ("r", "z", "n")
  lstm = cells.LSTMCell(H)
  carry = lstm.initialize_carry((B,))
  assert len(carry) == 2 and lstm.hidden_of(carry) is carry[1]
  with pytest.raises(TypeError, match=r"Both defines both `gate`"):
    class Both(cells.RecurrentCell):  # pylint: disable=unused-variable
      num_gates = 1

      def gate(self, carry, xp, hp, extras):
        return carry, carry

      def recurrence(self, carry, xp):
        return carry, carry
  with pytest.raises(TypeError, match=r"gate_names \('h',\) must name its "
                     r"num_gates=2 gate blocks"):
    class Unnamed(cells.RecurrentCell):  # pylint: disable=unused-variable
      num_gates = 2
