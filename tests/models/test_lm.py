"""The recurrent language model: shapes, registry, state continuation."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import base_config
from rnnlab import models

V = 11


def lm_config(**kw):
  c = base_config.get_config().model
  c.hidden_size, c.embed_dim, c.num_layers = 8, 4, 2
  c.update(kw)
  return c


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("embedding", ["learned", "one_hot"])
def test_logits_shape_and_chunked_equals_whole(cell, embedding):
  model = models.create_model(lm_config(cell=cell, embedding=embedding),
                              vocab_size=V)
  tokens = jnp.asarray(np.random.default_rng(0).integers(0, V, (3, 10)))
  params = model.init(jax.random.key(0), tokens)["params"]
  logits, carries = model.apply({"params": params}, tokens)
  assert logits.shape == (3, 10, V) and logits.dtype == jnp.float32
  assert len(carries) == 2
  # Carrying the state across chunks equals one pass over the whole sequence.
  first, carries1 = model.apply({"params": params}, tokens[:, :4])
  second, _ = model.apply({"params": params}, tokens[:, 4:], carries1)
  np.testing.assert_allclose(jnp.concatenate([first, second], 1), logits,
                             atol=1e-5)


def test_one_hot_has_no_embedding_table():
  model = models.create_model(lm_config(embedding="one_hot"), vocab_size=V)
  params = model.init(jax.random.key(0), jnp.zeros((1, 2), jnp.int32))
  assert "embed" not in params["params"]
  first_kernel = params["params"]["rnn"]["layers_0"]["input_proj"]
  assert first_kernel["kernel"].shape[0] == V


@pytest.mark.parametrize("key,value,message", [
    ("name", "transformer", r"Unknown model 'transformer'.*'rnn_lm'"),
    ("cell", "gur", r"Unknown cell 'gur'.*'gru', 'lstm', 'rnn'"),
    ("embedding", "bag", r"Unknown embedding 'bag'.*'learned', 'one_hot'"),
    ("dtype", "float8", r"Unknown dtype 'float8'.*'bfloat16'"),
])
def test_bad_names_list_valid_choices(key, value, message):
  with pytest.raises(ValueError, match=message):
    models.create_model(lm_config(**{key: value}), vocab_size=V)


@pytest.mark.parametrize("std", [1.0, 0.1])
def test_embedding_init_std_is_configurable(std):
  model = models.create_model(lm_config(embed_dim=64, embed_init_std=std),
                              vocab_size=V)
  params = model.init(jax.random.key(0), jnp.zeros((1, 2), jnp.int32))
  table = params["params"]["embed"]["embedding"]
  assert table.shape == (V, 64)
  assert float(jnp.std(table)) == pytest.approx(std, rel=0.1)


def attention_lm(window=6, **kw):
  return models.create_model(
      lm_config(name="attention_lm", attention_score="scaled_dot",
                attention_window=window, **kw), vocab_size=V)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_attention_lm_chunks_and_steps_equal_one_pass(cell):
  """Memory carries the last `window` states across chunks, so streaming
  (evaluation) and stepping (sampling) compute the same logits."""
  model = attention_lm(cell=cell)
  tokens = jnp.asarray(np.random.default_rng(1).integers(0, V, (3, 20)))
  params = model.init(jax.random.key(0), tokens)["params"]
  variables = {"params": params}
  logits, _ = model.apply(variables, tokens)
  first, carries = model.apply(variables, tokens[:, :8])
  second, _ = model.apply(variables, tokens[:, 8:], carries)
  np.testing.assert_allclose(jnp.concatenate([first, second], 1), logits,
                             atol=1e-5)
  carries = model.initialize_carry(3)
  for t in range(20):
    step_logits, carries = model.apply(variables, tokens[:, t], carries,
                                       method="step")
    np.testing.assert_allclose(step_logits, logits[:, t], atol=1e-5)


def test_attention_lm_is_causal():
  model = attention_lm()
  tokens = jnp.asarray(np.random.default_rng(2).integers(0, V, (2, 12)))
  params = model.init(jax.random.key(0), tokens)["params"]
  logits, _ = model.apply({"params": params}, tokens)
  changed = tokens.at[:, 7:].set((tokens[:, 7:] + 1) % V)
  other, _ = model.apply({"params": params}, changed)
  np.testing.assert_array_equal(logits[:, :7], other[:, :7])
  assert not np.allclose(logits[:, 7:], other[:, 7:])


def test_attention_lm_window_mask():
  """Query t attends to the last `window` states (current included):
  memory slots only while within reach, nothing before the stream began."""
  from rnnlab.models import lm  # pylint: disable=g-import-not-at-top
  window, steps = 4, 5
  model = attention_lm(window=window)
  tokens = jnp.zeros((2, steps), jnp.int32)
  params = model.init(jax.random.key(0), tokens)["params"]
  rng = np.random.default_rng(3)
  h = jnp.asarray(rng.normal(size=(2, steps, 8)), jnp.float32)
  memory = jnp.asarray(rng.normal(size=(2, window, 8)), jnp.float32)
  count = jnp.array([0, 3])
  _, (new_memory, new_count, weights) = model.apply(
      {"params": params}, h, memory, count, method=lm.AttentionLM._attend)
  w = np.asarray(weights)  # [B, T, W + T]
  np.testing.assert_allclose(w.sum(-1), 1, rtol=1e-5)
  for b, n in enumerate((0, 3)):
    for t in range(steps):
      seen = np.nonzero(w[b, t])[0]
      positions = seen - window  # stream position relative to chunk start
      assert positions.max() == t and positions.min() == max(t - window + 1,
                                                              -n)
  np.testing.assert_allclose(new_memory, h[:, -window:])
  np.testing.assert_array_equal(new_count, [4, 4])


def test_attention_lm_needs_a_score():
  with pytest.raises(ValueError, match=r"Unknown attention score 'none'"):
    models.create_model(lm_config(name="attention_lm", attention_score="none"),
                        vocab_size=V)
