"""Seq2seq addition, "a+b" -> "c" with operands of up to 3 digits (as in
Flax's seq2seq example): a bidirectional GRU encoder (its two directions
summed, as wide as the decoder), a GRU decoder with additive (Bahdanau)
attention. Held-out pairs never appear in training.

  python -m rnnlab.main --config=configs/gru_seq2seq_addition.py --workdir=runs/addition
  python -m rnnlab.main --config=configs/gru_seq2seq_addition.py:none --workdir=runs/addition_none
  python -m rnnlab.main --config=configs/gru_seq2seq_addition.py:runlocal --workdir=/tmp/addition

The arg picks the attention and/or "runlocal" (rnnlab.recipes.seq2seq_config);
every attention gets the same encoder.

Measured (2026-12-07, this 2-core CPU shared with another training job,
jax 0.10.2, the commands above; docs/attention.md): exact match on the
2,000 held-out test pairs after 3,000 steps of 128, greedy / 4-beam
decoding (greedy at steps 1,000; 2,000), wall clock of the whole command:
  additive attention   99.6% / 99.6% (9.95%; 99.0%), 1 min 9 s
  no attention (:none) 24.95% / 18.7% (3.5%; 10.75%), 54 s
  general (:general)   97.85% / 97.95% (7.55%; 57.15%), 1 min 3 s
  dot (:dot)           98.5% / 98.5% (74.55%; 97.3%), 1 min 54 s
  scaled_dot           98.5% / 98.4% (3.45%; 75.15%), 1 min 22 s
The figures of 2026-11-26 (dot 17.4%, scaled_dot 18.0%, general 38.7%,
additive 99.7%, none 25.0%) predate the change: dot and scaled_dot then
got a unidirectional encoder, which cannot see the carries coming from the
digits to its right (with it additive attention gets 16.3%), and the other
scores a bidirectional one with its directions concatenated.
"""
from rnnlab import recipes


def get_config(arg: str = ""):
  return recipes.seq2seq_config("addition", arg, batch_size=128)
