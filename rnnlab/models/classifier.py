"""Sequence classifier: a (bidirectional, masked) recurrent stack, pooled over
time, and a linear readout to class logits.

Shape legend: B batch, T time (right-padded), D input features, V input
vocabulary, E embedding / projection width, H the stack's output width
(2 x hidden for a bidirectional stack with merge "concat"), C classes.

  inputs   [B, T] int32 tokens -> Embed [V, E]   (vocab_size > 0); in
           training each token is replaced by <unk> with probability
           word_dropout (Iyyer et al. 2015's word dropout), or
           [B, T, D] float32 frames -> Dense to E (input_projection="dense")
           or as they are ("identity")
  stack    RecurrentStack with seq_lengths: padded steps neither change the
           carries nor reach the outputs (their outputs are zero)
  pooling  "last": each layer-L direction's final hidden state, i.e. the
           forward state after the last valid step and the backward state
           after reading back to t = 0, merged as the stack merges outputs;
           "mean" / "max": over the valid steps of the top layer's outputs
  readout  dropout (model.dropout_rate), Dense to C -> logits [B, C] float32

An ensemble (classify.ensemble_size M > 1, `ClassifierEnsemble`) holds M
such classifiers, each parameter stacked on a leading axis [M, ...]:
training returns each member's logits [M, B, C], evaluation the log of
the members' mean class probabilities [B, C].
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from rnnlab import hashrng
from rnnlab.models import cells as cells_lib
from rnnlab.models import layers
from rnnlab.registry import lookup

Array = jax.Array

POOLINGS = ("last", "mean", "max")
INPUT_PROJECTIONS = ("dense", "identity")


def drop_words(rng: Array, tokens: Array, rate: float, unk_id: int,
               pad_id: int) -> Array:
  """tokens [B, T] with each non-padding token replaced by unk_id with
  probability `rate`: the model must read the rest of the sentence instead
  of memorising a few words, which on 10k snippets it otherwise does."""
  keep = hashrng.keep_mask(rng, tokens.shape, rate)
  return jnp.where(keep | (tokens == pad_id), tokens, unk_id)


class SequenceClassifier(nn.Module):
  """(inputs, lengths [B]) -> logits [B, C]; see the module docstring."""

  num_classes: int
  rnn: layers.RecurrentStack
  vocab_size: int = 0  # > 0: token inputs
  embed_dim: int = 64
  embed_init_std: float = 1.0
  input_projection: str = "dense"
  pooling: str = "last"
  word_dropout: float = 0.0  # token inputs: P(token -> unk_id) in training
  unk_id: int = 1  # rnnlab.data.classification.UNK_ID
  pad_id: int = 0  # padding is never replaced

  @classmethod
  def from_config(cls, c, *, num_classes: int, vocab_size: int = 0,
                  pooling: str = "last", input_projection: str = "dense",
                  word_dropout: float = 0.0, unk_id: int = 1,
                  pad_id: int = 0, ensemble_size: int = 1) -> nn.Module:
    """`c` is config.model; the head's pooling and input projection, the
    word dropout and the ensemble size are the task's (config.classify).
    ensemble_size > 1 returns a `ClassifierEnsemble` of such members."""
    lookup({p: p for p in POOLINGS}, pooling, "pooling")
    lookup({p: p for p in INPUT_PROJECTIONS}, input_projection,
           "input projection")
    rnn = layers.RecurrentStack(**layers.stack_kwargs_from_config(c),
                                parent=None)
    member = cls(num_classes=num_classes, rnn=rnn, vocab_size=vocab_size,
                 embed_dim=c.embed_dim, embed_init_std=c.embed_init_std,
                 input_projection=input_projection, pooling=pooling,
                 word_dropout=word_dropout, unk_id=unk_id, pad_id=pad_id,
                 parent=None)
    if ensemble_size > 1:
      return ClassifierEnsemble(member=member, size=ensemble_size)
    return member

  def setup(self):
    dtypes = dict(dtype=self.rnn.dtype, param_dtype=self.rnn.param_dtype)
    if self.vocab_size:
      self.embed = nn.Embed(
          self.vocab_size, self.embed_dim,
          embedding_init=nn.initializers.normal(self.embed_init_std),
          **dtypes)
    elif self.input_projection == "dense":
      self.project = nn.Dense(self.embed_dim, **dtypes)
    self.dropout = layers.Dropout(self.rnn.dropout_rate)
    self.readout = nn.Dense(self.num_classes, **dtypes)

  def __call__(self, inputs: Array, lengths: Array, *,
               train: bool = False) -> Array:
    if self.vocab_size:
      if train and self.word_dropout > 0:
        inputs = drop_words(self.make_rng("dropout"), inputs,
                            self.word_dropout, self.unk_id, self.pad_id)
      xs = self.embed(inputs)
    else:
      xs = inputs.astype(self.rnn.dtype)
      if self.input_projection == "dense":
        xs = self.project(xs)
    carries, ys = self.rnn(xs, train=train, seq_lengths=lengths)
    pooled = self.pool(carries[-1], ys, lengths)
    pooled = self.dropout(pooled, deterministic=not train)
    return self.readout(pooled).astype(jnp.float32)

  def pool(self, last_carry, ys: Array, lengths: Array) -> Array:
    """The top layer's final carry and outputs ys [B, T, H] -> [B, H]."""
    if self.pooling == "last":
      hidden_of = cells_lib.CELLS[self.rnn.cell].hidden_of
      if self.rnn.bidirectional:
        forward, backward = last_carry
        return layers.MERGES[self.rnn.merge](
            hidden_of(forward), hidden_of(backward)).astype(ys.dtype)
      return hidden_of(last_carry).astype(ys.dtype)
    valid = layers.length_mask(lengths, ys.shape[1])[..., None]  # [B, T, 1]
    if self.pooling == "mean":
      total = jnp.sum(jnp.where(valid, ys, 0).astype(jnp.float32), axis=1)
      return (total / lengths[:, None].astype(jnp.float32)).astype(ys.dtype)
    return jnp.max(jnp.where(valid, ys, -jnp.inf), axis=1)


class ClassifierEnsemble(nn.Module):
  """`size` independently initialised copies of `member`, trained side by
  side on the same batches, each with its own dropout and word-dropout
  masks (lifted with nn.vmap: one program, every parameter [size, ...]).

  (inputs, lengths [B]) -> logits: [size, B, C], one row per member, with
  train=True, so that each member fits the labels on its own (training
  their average instead lets the members co-adapt); log of the members'
  mean class probabilities [B, C] otherwise, so that evaluation, the best
  checkpoint's choice and labelling see one classifier.
  """

  member: SequenceClassifier
  size: int

  @nn.compact
  def __call__(self, inputs: Array, lengths: Array, *,
               train: bool = False) -> Array:
    members = nn.vmap(
        lambda member, xs, ls: member(xs, ls, train=train),
        variable_axes={"params": 0},
        split_rngs={"params": True, "dropout": True},
        in_axes=(None, None), out_axes=0, axis_size=self.size)
    logits = members(self.member, inputs, lengths)  # [M, B, C]
    if train:
      return logits
    return (jax.nn.logsumexp(jax.nn.log_softmax(logits, -1), axis=0)
            - jnp.log(self.size))
