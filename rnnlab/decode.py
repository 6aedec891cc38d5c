"""Greedy and beam-search decoding for `models.seq2seq.Seq2Seq`, each one
jit-compiled `lax.scan` over output positions.

Both return tokens [B, L] that end in EOS and then PAD; `decode_text`
turns them back into strings with the vocabulary.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from rnnlab.data.seq2seq import BOS, EOS, PAD


def _encode(model, params, source, source_len):
  return model.apply({"params": params}, source, source_len,
                     method=model.encode)


def _step(model, params, token, carries, encoded, source_len):
  return model.apply({"params": params}, token, carries, encoded, source_len,
                     method=model.step)


@functools.partial(jax.jit, static_argnums=(0, 4))
def greedy(model, params, source, source_len, max_len: int):
  """-> (tokens [B, L], attention weights [B, L, S])."""
  encoded, carries = _encode(model, params, source, source_len)
  batch = source.shape[0]

  def body(state, _):
    token, carries, done = state
    logits, weights, carries = _step(model, params, token, carries, encoded,
                                     source_len)
    token = jnp.where(done, PAD, jnp.argmax(logits, -1).astype(jnp.int32))
    done = done | (token == EOS)
    return (token, carries, done), (token, weights)

  init = (jnp.full((batch,), BOS, jnp.int32), carries,
          jnp.zeros((batch,), bool))
  _, (tokens, weights) = jax.lax.scan(body, init, None, length=max_len)
  return tokens.T, jnp.swapaxes(weights, 0, 1)


@functools.partial(jax.jit, static_argnums=(0, 4, 5))
def beam_search(model, params, source, source_len, max_len: int,
                beam_size: int):
  """The highest-scoring (sum of log-probabilities) of `beam_size` beams.

  A finished beam (it emitted EOS) is extended only by PAD at no cost, so
  finished and unfinished hypotheses compete on total log-probability.
  -> (tokens [B, L], scores [B]).
  """
  batch, k = source.shape[0], beam_size
  encoded, carries = _encode(model, params, source, source_len)
  tile = lambda a: jnp.repeat(a, k, axis=0)  # [B, ...] -> [B*K, ...]
  encoded, source_len = tile(encoded), tile(source_len)
  carries = jax.tree.map(tile, carries)
  # Only beam 0 is alive at first, so the K first tokens are distinct.
  scores = jnp.full((batch, k), -jnp.inf).at[:, 0].set(0.0)
  tokens = jnp.full((batch, k, max_len), PAD, jnp.int32)
  finished = jnp.zeros((batch, k), bool)

  def body(state, t):
    last, carries, scores, tokens, finished = state
    logits, _, carries = _step(model, params, last, carries, encoded,
                               source_len)
    logp = jax.nn.log_softmax(logits).reshape(batch, k, -1)
    vocab = logp.shape[-1]
    pad_only = jnp.where(jnp.arange(vocab) == PAD, 0.0, -jnp.inf)
    logp = jnp.where(finished[..., None], pad_only, logp)
    candidates = (scores[..., None] + logp).reshape(batch, k * vocab)
    scores, index = jax.lax.top_k(candidates, k)
    parent, token = index // vocab, (index % vocab).astype(jnp.int32)
    pick = lambda a: jnp.take_along_axis(
        a, parent.reshape(parent.shape + (1,) * (a.ndim - 2)), axis=1)
    tokens = pick(tokens).at[:, :, t].set(token)
    finished = pick(finished) | (token == EOS)
    carries = jax.tree.map(
        lambda c: pick(c.reshape((batch, k) + c.shape[1:])).reshape(c.shape),
        carries)
    return (token.reshape(-1), carries, scores, tokens, finished), None

  init = (jnp.full((batch * k,), BOS, jnp.int32), carries, scores, tokens,
          finished)
  (_, _, scores, tokens, _), _ = jax.lax.scan(body, init,
                                              jnp.arange(max_len))
  best = jnp.argmax(scores, axis=1)
  return (jnp.take_along_axis(tokens, best[:, None, None], 1)[:, 0],
          jnp.take_along_axis(scores, best[:, None], 1)[:, 0])


def decode_text(vocab, tokens) -> list[str]:
  return [vocab.decode(row) for row in jax.device_get(tokens)]
