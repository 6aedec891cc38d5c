"""Seq2seq addition, "a+b" -> "c" with operands of up to 3 digits (as in
Flax's seq2seq example): a bidirectional GRU encoder (its two directions
summed, as wide as the decoder), a GRU decoder with additive (Bahdanau)
attention. Held-out pairs never appear in training.

  python -m rnnlab.main --config=configs/gru_seq2seq_addition.py --workdir=runs/addition
  python -m rnnlab.main --config=configs/gru_seq2seq_addition.py:none --workdir=runs/addition_none
  python -m rnnlab.main --config=configs/gru_seq2seq_addition.py:runlocal --workdir=/tmp/addition

The arg picks the attention and/or "runlocal" (rnnlab.recipes.seq2seq_config);
every attention gets the same encoder.

Measured (2026-12-07, AMD EPYC, 2 cores, jax 0.10.2; the controlled study
of docs/attention.md, python -m
experiments.attention_study --root=runs/attention
--steps=dates:1000,numbers:1000 --doc=docs/attention.md): exact
match on the 2,000 held-out test pairs after 3,000 steps of 128, mean ±
std over seeds 0, 1, 2, greedy / 4-beam decoding, wall clock per run:
  additive attention   99.5 ± 0.5% / 99.5 ± 0.5%, 70 s
  dot (:dot)           99.2 ± 0.6% / 99.2 ± 0.6%, 64 s
  scaled_dot           98.2 ± 0.9% / 98.3 ± 0.7%, 57 s
  general (:general)   98.0 ± 0.6% / 98.0 ± 0.6%, 62 s
  no attention (:none) 34.9 ± 24.5% / 29.4 ± 28.2%, 56 s
The figures of 2026-11-26 (dot 17.4%, scaled_dot 18.0%, general 38.7%,
additive 99.7%, none 25.0%) predate the change: dot and scaled_dot then
got a unidirectional encoder, which cannot see the carries coming from the
digits to its right (with it additive attention gets 16.3%), and the other
scores a bidirectional one with its directions concatenated.
"""
from rnnlab import recipes


def get_config(arg: str = ""):
  return recipes.seq2seq_config("addition", arg, batch_size=128)
