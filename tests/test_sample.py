"""The jit-compiled sampler: determinism, temperature, equivalence, prime."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import models
from rnnlab import sampling
from rnnlab.data import text
from tests.helpers import assert_bfloat16_close
from tests.helpers import assert_float32_close
from tests.helpers import float32_atol
from tests.helpers import tiny_config

VOCAB = text.Vocab.from_text("abcdefghij klmnopqrstuvwxyz.\n")


def lstm_lm(dtype: str = "float32"):
  """lstm_shakespeare:runlocal's LM at hidden 16, embedding 8, computing in
  `dtype` (parameters float32: the same values for either dtype)."""
  c = tiny_config("lstm_shakespeare", model__hidden_size=16,
                  model__embed_dim=8, model__dtype=dtype)
  model = models.create_model(c.model, vocab_size=len(VOCAB))
  params = model.init(jax.random.key(0), jnp.zeros((1, 1), jnp.int32))
  # Larger weights than the init so that distributions are far from uniform.
  params = jax.tree.map(lambda p: p * 3.0, params["params"])
  return model, params


@pytest.fixture(scope="module")
def lm():
  return lstm_lm()


draw = functools.partial(sampling.sample_text, vocab=VOCAB, length=40)


def test_same_seed_same_text_and_different_seeds_differ(lm):
  model, params = lm
  a = draw(model, params, prime="the ", seed=0)
  assert a == draw(model, params, prime="the ", seed=0)
  assert a != draw(model, params, prime="the ", seed=1)
  assert len(a[0]) == 40 and set(a[0]) <= set(VOCAB.chars)


def test_temperature_to_zero_is_argmax(lm):
  model, params = lm
  prime = jnp.asarray(VOCAB.encode("abc"))[None]
  greedy, _ = sampling.generate(model, params, prime, jax.random.key(0),
                              length=30, temperature=0.0)
  cold, _ = sampling.generate(model, params, prime, jax.random.key(5),
                            length=30, temperature=1e-4)
  np.testing.assert_array_equal(greedy, cold)
  # Greedy decoding picks the argmax of each step's logits.
  logits, _ = model.apply({"params": params},
                          jnp.concatenate([prime, greedy], axis=1))
  np.testing.assert_array_equal(greedy[0], jnp.argmax(logits[0, 2:-1], -1))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("top_k", [0, 3])
def test_sampler_equals_step_by_step_forward(top_k, dtype):
  """The sampler's logits are the model's, one call per character, and a
  forward pass over prime + sample; also with a bfloat16 compute dtype."""
  model, params = lstm_lm(dtype)
  if dtype == "float32":
    # Two programs. Logits reach ~5 (the weights are x3): atol scaled to
    # them, for logits near zero.
    assert_close = lambda a, e: assert_float32_close(a, e,
                                                     atol=float32_atol(e))
  else:
    assert_close = assert_bfloat16_close
  rng = jax.random.key(7)
  prime = jnp.asarray(np.stack([VOCAB.encode("hello"),
                                VOCAB.encode("world")]))
  tokens, step_logits = sampling.generate(model, params, prime, rng, length=25,
                                        temperature=0.9, top_k=top_k)
  # Reference: one model call per character, in a Python loop, fed the
  # sampler's tokens (in bfloat16 two logits within rounding of each other
  # could tip a draw the other way; the sequences would then part).
  apply = jax.jit(model.apply)
  logits, carry = apply({"params": params}, prime)
  last = logits[:, -1]
  seeds = sampling.step_seeds(rng, 25)
  for i in range(25):
    assert_close(step_logits[:, i], last)
    # Each token is the draw from the logits the sampler returns...
    np.testing.assert_array_equal(
        tokens[:, i], sampling.next_token(step_logits[:, i], seeds[i], 0.9,
                                          top_k))
    if dtype == "float32":  # ...and, in float32, from the reference's.
      np.testing.assert_array_equal(
          tokens[:, i], sampling.next_token(last, seeds[i], 0.9, top_k))
    logits, carry = apply({"params": params}, tokens[:, i, None], carry)
    last = logits[:, 0]
  assert {c.dtype for c in jax.tree.leaves(carry)} == {jnp.dtype(jnp.float32)}
  # And a single forward pass over prime + sample gives the same logits.
  full, _ = model.apply({"params": params},
                        jnp.concatenate([prime, tokens], axis=1))
  if dtype == "float32":
    np.testing.assert_allclose(full[:, 4:-1], step_logits, atol=1e-4)
  else:
    assert_close(step_logits, full[:, 4:-1])


def test_top_k_restricts_choices(lm):
  model, params = lm
  prime = jnp.asarray(VOCAB.encode("a"))[None]
  tokens, logits = sampling.generate(model, params, prime, jax.random.key(1),
                                   length=60, temperature=5.0, top_k=2)
  top2 = jax.lax.top_k(logits[0], 2)[1]
  assert all(int(t) in top2[i].tolist() for i, t in enumerate(tokens[0]))


def test_prime_changes_output(lm):
  model, params = lm
  assert (draw(model, params, prime="abc", temperature=0.0) !=
          draw(model, params, prime="xyz", temperature=0.0))


def test_batch_rows_are_independent_draws(lm):
  model, params = lm
  rows = draw(model, params, prime="a", seed=3, batch_size=4)
  assert len(rows) == 4 and len(set(rows)) > 1


@pytest.mark.parametrize("kwargs,message", [
    (dict(prime="abcQ@"), r"not in the vocabulary: \['@', 'Q'\]"),
    (dict(prime=""), "at least one character"),
    (dict(prime="a", top_k=-1), "top_k=-1"),
    (dict(prime="a", temperature=-1.0), "temperature=-1.0"),
])
def test_bad_sampling_arguments(lm, kwargs, message):
  model, params = lm
  with pytest.raises(ValueError, match=message):
    draw(model, params, **kwargs)


def test_draws_follow_the_softmax_distribution():
  """Gumbel-max with hash uniforms samples softmax(logits / T)."""
  logits = jnp.log(jnp.array([[0.5, 0.25, 0.15, 0.1]]))
  seeds = sampling.step_seeds(jax.random.key(0), 20000)
  draws = jax.vmap(lambda s: sampling.next_token(logits, s, 1.0))(seeds)
  freq = np.bincount(np.asarray(draws).ravel(), minlength=4) / 20000
  np.testing.assert_allclose(freq, [0.5, 0.25, 0.15, 0.1], atol=0.015)
  hot = jax.vmap(lambda s: sampling.next_token(logits, s, 0.5))(seeds)
  expected = np.array([0.5, 0.25, 0.15, 0.1])**2
  np.testing.assert_allclose(
      np.bincount(np.asarray(hot).ravel(), minlength=4) / 20000,
      expected / expected.sum(), atol=0.015)
