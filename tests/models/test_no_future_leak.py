"""A next-character LM must not see the character it predicts.

Synthetic data: a fixed prefix, then one token drawn uniformly from K
symbols, independent of everything before it, then an end token. No causal
model can predict that token better than chance, ln K nats; a model that
does has read its own target. The leaky control, a bidirectional stack used
as an LM (as in the chapter's bidirectional LM example), proves the test
can fail.
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rnnlab import base_config
from rnnlab import models
from rnnlab.errors import UserError
from rnnlab.models import layers

K, PREFIX, VOCAB = 8, 5, 12  # symbols 0..K-1 random, K.. prefix and end
END = VOCAB - 1


def sequences(n, seed):
  rng = np.random.default_rng(seed)
  prefix = np.tile(np.arange(K, K + PREFIX) % (VOCAB - 1), (n, 1))
  random_token = rng.integers(0, K, (n, 1))
  return np.concatenate([prefix, random_token, np.full((n, 1), END)], 1)


def random_token_loss(apply_fn, params, seqs):
  """Mean NLL of the random token: predicted at position PREFIX - 1."""
  logits = apply_fn(params, jnp.asarray(seqs[:, :-1]))
  nll = optax.softmax_cross_entropy_with_integer_labels(
      logits[:, PREFIX - 1], jnp.asarray(seqs[:, PREFIX]))
  return float(nll.mean())


def train(apply_fn, params, steps=150):
  tx = optax.adam(1e-2)
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, seqs):
    def loss_fn(p):
      logits = apply_fn(p, seqs[:, :-1])
      return optax.softmax_cross_entropy_with_integer_labels(
          logits, seqs[:, 1:]).mean()
    grads = jax.grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state

  for i in range(steps):
    params, opt_state = step(params, opt_state,
                             jnp.asarray(sequences(64, seed=i)))
  return params


class LeakyBidirectionalLM(nn.Module):
  """Test-only control: the chapter's bidirectional LM."""

  @nn.compact
  def __call__(self, tokens):
    x = nn.Embed(VOCAB, 8)(tokens)
    _, h = layers.RecurrentStack("gru", 16, bidirectional=True,
                                 cell_options={})(x)
    return nn.Dense(VOCAB)(h)


def test_causal_lm_cannot_beat_chance_but_leaky_control_does():
  held_out = sequences(512, seed=10_000)
  c = base_config.get_config().model
  c.cell, c.hidden_size, c.embed_dim, c.num_layers = "gru", 16, 8, 2
  c.dropout_rate = 0.0
  lm = models.create_model(c, vocab_size=VOCAB)
  lm_apply = lambda p, t: lm.apply({"params": p}, t)[0]
  lm_params = train(lm_apply, lm.init(jax.random.key(0),
                                      jnp.zeros((1, 3), jnp.int32))["params"])
  leaky = LeakyBidirectionalLM()
  leaky_apply = lambda p, t: leaky.apply({"params": p}, t)
  leaky_params = train(leaky_apply, leaky.init(
      jax.random.key(0), jnp.zeros((1, 3), jnp.int32))["params"])

  chance = math.log(K)
  assert random_token_loss(lm_apply, lm_params, held_out) >= chance - 0.05
  # The leaky model copies its target from the input it should not see.
  assert random_token_loss(leaky_apply, leaky_params, held_out) < 0.5 * chance
  # Both learned the predictable tokens (the test is not vacuous).
  for apply_fn, params in ((lm_apply, lm_params),
                           (leaky_apply, leaky_params)):
    logits = apply_fn(params, jnp.asarray(held_out[:, :-1]))
    assert np.mean(np.argmax(logits[:, :PREFIX - 1], -1) ==
                   held_out[:, 1:PREFIX]) == 1.0


def test_lm_refuses_bidirectional_and_says_why():
  c = base_config.get_config().model
  c.bidirectional = True
  with pytest.raises(UserError, match="backward direction reads the "
                     "characters after each position"):
    models.create_model(c, vocab_size=VOCAB)
