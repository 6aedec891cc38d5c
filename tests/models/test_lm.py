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
