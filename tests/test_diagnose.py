"""Gradient-flow diagnostic: it measures the real model, and the numbers are
the gradients they claim to be."""
from __future__ import annotations

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rnnlab import checkpoint
from rnnlab import diagnose
from rnnlab import metrics as metrics_lib
from rnnlab import models
from rnnlab import rundir
from rnnlab.errors import UserError
from rnnlab.models import cells
from tests.helpers import ROOT, tiny_config, tiny_lm_config

VOCAB = 11
BATCH, STEPS = 3, 10


def tiny_model(cell, **overrides):
  """(config, model): gru_shakespeare:runlocal's LM of `cell`, shrunk to
  8 units and a 4-dim embedding, no dropout."""
  config = tiny_config(model__cell=cell, model__hidden_size=8,
                       model__embed_dim=4, model__dropout_rate=0.0,
                       **overrides)
  model = models.create_model(config.model, vocab_size=VOCAB)
  return config, model


def tokens(seed=0, shape=(BATCH, STEPS)):
  return jax.random.randint(jax.random.key(seed), shape, 0, VOCAB)


def init(model, seed=0):
  return model.init(jax.random.key(seed), tokens())["params"]


def zero_recurrence(params, num_layers):
  """A copy of params with every layer's recurrent kernel zeroed."""
  params = jax.tree.map(lambda x: x, params)
  for l in range(num_layers):
    layer = diagnose.layer_params(params, l)
    layer["hidden_proj"]["kernel"] = jnp.zeros_like(
        layer["hidden_proj"]["kernel"])
  return params


@pytest.mark.parametrize("cell,overrides", [
    ("rnn", {}),
    ("lstm", {}),
    ("gru", {}),
    # Not the plain stack: layer by layer, with _merge_input and zoneout.
    ("lstm", {"model__layer_norm": True, "model__residual": True,
              "model__zoneout": 0.2}),
])
def test_step_by_step_logits_equal_the_models(cell, overrides):
  _, model = tiny_model(cell, **overrides)
  params = init(model)
  err = diagnose.check_matches_model(model, params, tokens(1), atol=1e-5)
  assert err < 1e-5


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_gradients_are_finite_and_reach_the_last_step(cell):
  _, model = tiny_model(cell)
  losses, grads = diagnose.state_gradients(model, init(model), tokens(2),
                                           tokens(3))
  assert losses.shape == (BATCH,) and np.all(np.isfinite(losses))
  norms = diagnose.window_norms(grads, cell)
  for layer in norms:
    for part in layer.values():
      assert part.shape == (STEPS, BATCH) and np.all(np.isfinite(part))
    assert np.all(layer["h"][-1] > 0)  # every window, every layer
    assert np.all(layer["h"][0] > 0)
    if cell == "lstm":
      # c_{T-1} is perturbed after h_{T-1} is computed: it cannot reach L_T.
      np.testing.assert_array_equal(layer["c"][-1], 0)
      assert np.all(layer["c"][0] > 0)


def test_elman_without_recurrence_has_gradient_at_the_last_step_only():
  _, model = tiny_model("rnn")
  params = zero_recurrence(init(model), 2)
  _, grads = diagnose.state_gradients(model, params, tokens(2), tokens(3))
  for layer in diagnose.window_norms(grads, "rnn"):
    np.testing.assert_array_equal(layer["h"][:-1], 0)
    assert np.all(layer["h"][-1] > 0)


@pytest.mark.parametrize("part", [0, 1])  # the LSTM carry is (c, h)
def test_gradient_equals_finite_difference(part):
  _, model = tiny_model("lstm")
  params = init(model, seed=4)
  inputs, targets = tokens(5), tokens(6)
  _, grads = diagnose.state_gradients(model, params, inputs, targets)
  t, layer = STEPS - 4, 0
  g = np.asarray(grads[layer][part][t])  # [B, H]
  b, unit = np.unravel_index(np.argmax(np.abs(g)), g.shape)

  def loss(eps):
    deltas = diagnose.zero_deltas(model, BATCH, STEPS)
    leaf = deltas[layer][part].at[t, b, unit].set(eps)
    deltas = list(deltas)
    deltas[layer] = tuple(leaf if i == part else x
                          for i, x in enumerate(deltas[layer]))
    return float(jnp.sum(diagnose.last_step_losses(
        model, params, inputs, targets, tuple(deltas))))

  eps = 1e-2
  numeric = (loss(eps) - loss(-eps)) / (2 * eps)
  assert abs(g[b, unit]) > 1e-3
  np.testing.assert_allclose(numeric, g[b, unit], rtol=3e-2)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_initialisers_describe_the_fresh_parameters(cell):
  config, model = tiny_model(cell, model__forget_bias=2.0)
  params = init(model)
  described = diagnose.initialisers(config.model)
  assert "orthogonal" in described["recurrent_kernel"]
  assert "lecun_normal" in described["input_kernel"]
  hidden = config.model.hidden_size
  for l in range(config.model.num_layers):
    p = diagnose.layer_params(params, l)
    w = np.asarray(p["hidden_proj"]["kernel"])
    for block in np.split(w, w.shape[1] // hidden, axis=1):
      np.testing.assert_allclose(block.T @ block, np.eye(hidden), atol=1e-5)
    bias = np.asarray(p["input_proj"]["bias"])
    if cell == "lstm":
      assert "forget gate: 2.0" in described["biases"]
      np.testing.assert_array_equal(np.split(bias, 4)[1], 2.0)
      bias = np.delete(bias, np.s_[hidden:2 * hidden])
    np.testing.assert_array_equal(bias, 0)
    if cell == "gru":
      np.testing.assert_array_equal(p["hidden_candidate_bias"], 0)
  np.testing.assert_array_equal(params["readout"]["bias"], 0)
  summary = diagnose.param_summary(params, cell, config.model.num_layers)
  for layer in summary:
    for value in layer["recurrent_max_singular_value"].values():
      assert value == pytest.approx(1.0, abs=1e-4)


class LeakyMemoryCell(cells.RecurrentCell):
  """M_t = 0.9 M_{t-1} + 0.1 tanh(xp_m + hp_m); H_t = σ(xp_u + hp_u) ∘
  tanh(M_t): a carry of two parts, named by the cell."""

  num_gates = 2
  gate_names = ("m", "u")
  carry_names = ("m", "h")

  def gate(self, carry, xp, hp, extras):
    del extras
    m, _ = carry
    xm, xu = jnp.split(xp, 2, axis=-1)
    hm, hu = jnp.split(hp, 2, axis=-1)
    m = 0.9 * m + 0.1 * jnp.tanh(xm + hm)
    h = jax.nn.sigmoid(xu + hu) * jnp.tanh(m)
    return (m, h), h


def test_a_registered_cell_reports_its_own_gates_and_carry(monkeypatch):
  """diagnose names no cells: it reads gates and carry parts from the cell
  and perturbs the model's own step."""
  monkeypatch.setitem(cells.CELLS, "leaky", LeakyMemoryCell)
  config, model = tiny_model("leaky")
  params = init(model)
  assert diagnose.check_matches_model(model, params, tokens(1)) < 1e-5
  _, grads = diagnose.state_gradients(model, params, tokens(2), tokens(3))
  for layer in diagnose.window_norms(grads, "leaky"):
    assert set(layer) == {"m", "h"}
    assert np.all(layer["h"][-1] > 0)
    np.testing.assert_array_equal(layer["m"][-1], 0)  # read before δ
  assert "gates m/u" in diagnose.initialisers(config.model)["input_kernel"]
  for layer in diagnose.param_summary(params, "leaky", 2):
    assert set(layer["recurrent_max_singular_value"]) == {"m", "u"}


def test_bad_requests_name_the_choices(corpus_path):
  del corpus_path
  with pytest.raises(UserError, match="--config .* or\n?.*--workdir"):
    diagnose.load(None, None)
  config = tiny_lm_config("gru", model__name="attention_lm")
  with pytest.raises(UserError, match="model.name='rnn_lm'"):
    diagnose.load(config, None)
  _, task, params, _ = diagnose.load(tiny_lm_config("gru"), None)
  with pytest.raises(UserError, match="seq_len=1 must be >= 2"):
    diagnose.measure(task, params, seq_len=1)
  with pytest.raises(UserError, match="Valid choices: 'train', 'val'"):
    diagnose.measure(task, params, split="dev")


@pytest.fixture(scope="module")
def zero_recurrence_run(tmp_path_factory, corpus_path):
  """A run directory whose checkpoint is an Elman RNN with W_hh = 0."""
  del corpus_path
  workdir = tmp_path_factory.mktemp("rnn_run")
  config = tiny_lm_config("rnn", model__hidden_size=8, model__embed_dim=4)
  _, task, params, _ = diagnose.load(config, None)
  task.save_metadata(workdir)
  metrics_lib.write_json(workdir / "config.json",
                         json.loads(config.to_json_best_effort()))
  params = zero_recurrence(params, config.model.num_layers)
  ckpt = checkpoint.Checkpointer(workdir / rundir.CHECKPOINT_DIR)
  ckpt.save(7, params, optax.sgd(0.1).init(params), {"step": 7})
  ckpt.close()
  return workdir


def test_command_writes_json_and_plot(tmp_path, zero_recurrence_run):
  out = tmp_path / "out"
  proc = subprocess.run(
      [sys.executable, "-m", "rnnlab.diagnose",
       "--config=configs/gru_shakespeare.py:runlocal",
       "--config.model.hidden_size=8", "--config.model.embed_dim=4",
       "--seq_len=12", "--num_batches=2", "--batch_size=3",
       f"--output_dir={out}"],
      cwd=ROOT, capture_output=True, text=True, timeout=240)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "gru init: ‖∂L_T/∂h_0‖ / ‖∂L_T/∂h_{T-1}‖ = " in proc.stdout
  runs = json.loads((out / diagnose.JSON_NAME).read_text())["runs"]
  run = runs["gru init"]
  assert run["source"] == {"kind": "init", "step": 0, "seed": 0}
  assert run["windows"] == 6 and run["seq_len"] == 12
  top = run["layers"][-1]["h"]["mean"]
  assert len(top) == 12 and run["ratio"] == pytest.approx(top[0] / top[-1])
  assert 0 < run["ratio"] < np.inf
  assert "orthogonal" in run["initialisers"]["recurrent_kernel"]
  assert run["check_max_abs_diff"] < 1e-4

  # From a checkpoint, appended to the same JSON and plot. W_hh = 0 in the
  # checkpoint, unlike a fresh init: the zero ratio shows it was loaded.
  result = diagnose.diagnose(None, zero_recurrence_run, seq_len=6,
                             num_batches=1, batch_size=2)
  assert result["source"]["kind"] == "checkpoint"
  assert result["source"]["step"] == 7 and result["label"] == "rnn step 7"
  assert result["ratio_per_layer"] == [0.0, 0.0]
  before = (out / diagnose.PNG_NAME).stat().st_mtime_ns
  diagnose.write(result, out, append=True)
  runs = json.loads((out / diagnose.JSON_NAME).read_text())["runs"]
  assert sorted(runs) == ["gru init", "rnn step 7"]
  assert (out / diagnose.PNG_NAME).stat().st_mtime_ns > before
  assert (out / diagnose.PNG_NAME).read_bytes()[:4] == b"\x89PNG"
