"""Attention over a sequence of keys and values.

Shape legend: B batch, Q queries, K keys, Dq / Dk / Dv query / key / value
features, A the additive score's hidden size.

Scores s(q, k), one per (query, key) pair; `SCORES` maps names to them:

  dot          q · k                              Luong et al. 2015 (Dq = Dk)
  general      q · (W k)                          Luong et al. 2015
  additive     v · tanh(W_q q + W_k k)            Bahdanau et al. 2015
  scaled_dot   q · k / sqrt(Dk)                   Vaswani et al. 2017

weights = softmax over the keys of s, with masked keys getting exactly zero
weight; context = Σ_k weights_k · value_k. Keys are masked by

  key_lengths [B]   keys at k >= length are padding (right padding);
  causal=True       query i sees keys k <= i + query_offset: a model's own
                    hidden states up to and including the current step, so
                    no query is ever left without a key.

A query with no valid key at all (key_lengths 0) gets zero weights and a
zero context, not NaN.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from rnnlab.errors import UserError
from rnnlab.registry import lookup

Array = jax.Array


class DotScore(nn.Module):
  """s = q · k. Queries and keys must have the same width."""

  hidden_size: int | None = None  # unused; uniform constructor
  dtype: Any = jnp.float32

  def __call__(self, queries: Array, keys: Array) -> Array:
    _check_same_width(self, queries, keys)
    return jnp.einsum("bqd,bkd->bqk", queries.astype(self.dtype),
                      keys.astype(self.dtype))


class ScaledDotScore(DotScore):
  """s = q · k / sqrt(Dk): keeps the softmax out of saturation as Dk grows."""

  def __call__(self, queries: Array, keys: Array) -> Array:
    return super().__call__(queries, keys) / jnp.sqrt(keys.shape[-1]).astype(
        self.dtype)


class GeneralScore(nn.Module):
  """s = q · (W k), W [Dk, Dq]: queries and keys of any widths."""

  hidden_size: int | None = None  # unused; uniform constructor
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, queries: Array, keys: Array) -> Array:
    projected = nn.Dense(queries.shape[-1], use_bias=False, dtype=self.dtype,
                         name="key_proj")(keys)
    return jnp.einsum("bqd,bkd->bqk", queries.astype(self.dtype), projected)


class AdditiveScore(nn.Module):
  """s = v · tanh(W_q q + W_k k), hidden size A (default: the key width).

  Builds a [B, Q, K, A] tensor: fine for the short sequences of seq2seq
  tasks and attention LMs over a training window.
  """

  hidden_size: int | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, queries: Array, keys: Array) -> Array:
    size = self.hidden_size or keys.shape[-1]
    q = nn.Dense(size, use_bias=False, dtype=self.dtype, name="query_proj")(
        queries)
    k = nn.Dense(size, dtype=self.dtype, name="key_proj")(keys)
    v = self.param("v", nn.initializers.lecun_normal(), (size, 1))
    hidden = jnp.tanh(q[:, :, None, :] + k[:, None, :, :])  # [B, Q, K, A]
    return (hidden @ v.astype(self.dtype))[..., 0]


def _check_same_width(module, queries, keys):
  if queries.shape[-1] != keys.shape[-1]:
    raise UserError(
        f"{type(module).__name__} needs queries and keys of the same width; "
        f"got {queries.shape[-1]} and {keys.shape[-1]}. Use the 'general' or "
        f"'additive' score for different widths.")


SCORES: dict[str, type[nn.Module]] = {
    "dot": DotScore,
    "general": GeneralScore,
    "additive": AdditiveScore,
    "scaled_dot": ScaledDotScore,
}


def key_mask(num_queries: int, num_keys: int, key_lengths: Array | None = None,
             causal: bool = False, query_offset: int | Array = 0) -> Array:
  """Boolean [B or 1, Q, K]: True where query q may attend to key k."""
  mask = jnp.ones((1, num_queries, num_keys), bool)
  keys = jnp.arange(num_keys)
  if key_lengths is not None:
    mask = mask & (keys[None, None, :] < key_lengths[:, None, None])
  if causal:
    queries = jnp.arange(num_queries) + query_offset
    mask = mask & (keys[None, None, :] <= queries[None, :, None])
  return mask


def masked_softmax(scores: Array, mask: Array) -> Array:
  """Softmax over the last axis, exactly 0 where mask is False; all-masked
  rows give all-zero weights (not NaN) and no gradient."""
  scores = scores.astype(jnp.float32)
  scores = jnp.where(mask, scores, jnp.finfo(jnp.float32).min)
  weights = jax.nn.softmax(scores, axis=-1)
  return jnp.where(mask, weights, 0.0)


class Attention(nn.Module):
  """context, weights = Attention(kind)(queries, keys, values, ...).

  queries [B, Q, Dq], keys [B, K, Dk], values [B, K, Dv] (default: keys)
  -> context [B, Q, Dv], weights [B, Q, K] (float32, rows sum to 1 over
  the unmasked keys). See the module docstring for the masks.
  """

  kind: str = "dot"
  hidden_size: int | None = None  # additive only
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, queries: Array, keys: Array, values: Array | None = None,
               *, key_lengths: Array | None = None, causal: bool = False,
               query_offset: int | Array = 0,
               mask: Array | None = None) -> tuple[Array, Array]:
    """mask: optional bool [B or 1, Q, K], and-ed with the other masks."""
    score_cls = lookup(SCORES, self.kind, "attention score")
    values = keys if values is None else values
    scores = score_cls(hidden_size=self.hidden_size, dtype=self.dtype,
                       name="score")(queries, keys)
    full_mask = key_mask(queries.shape[1], keys.shape[1], key_lengths, causal,
                         query_offset)
    mask = full_mask if mask is None else full_mask & mask
    weights = masked_softmax(scores, mask)
    context = jnp.einsum("bqk,bkd->bqd", weights.astype(self.dtype),
                         values.astype(self.dtype))
    return context, weights
