"""Translating number words, French -> English: "quatre-vingt-dix-sept" ->
"ninety-seven", both as num2words writes them, for the values 0-9,999.
The values are split: the 1,000 validation and 2,000 test numbers are never
seen in training, in either language. Bidirectional GRU encoder (directions
summed), GRU decoder with additive attention, hidden 128.

  python -m rnnlab.main --config=configs/gru_seq2seq_numbers.py --workdir=runs/numbers
  python -m rnnlab.main --config=configs/gru_seq2seq_numbers.py:dot --workdir=runs/numbers_dot
  python -m rnnlab.main --config=configs/gru_seq2seq_numbers.py:runlocal --workdir=/tmp/numbers
  python -m rnnlab.translate --workdir=runs/numbers --text="deux mille vingt-six"
  # Another pair: --config.seq2seq.source_language=de (de, en, es, fr, it, nl, pt)

The arg picks the attention and/or "runlocal" (rnnlab.recipes.seq2seq_config).
Metrics: exact match, corpus BLEU and chrF (sacrebleu) of greedy and 4-beam
decoding over the held-out numbers; attention heatmaps of the first test
examples in <workdir>/attention/.

Measured 2026-12-07 on a 2-core AMD EPYC (shared with other jobs), seed 0,
the first command: 11 min 52 s; on the 2,000 test numbers exact match
99.95% greedy (already at step 1,000), 100.0% 4-beam; BLEU 99.996, chrF
99.999 (greedy). Copying the French source: exact match 0.0%, BLEU 0.02,
chrF 11.4. Details and a heatmap: docs/attention.md.

The controlled study (docs/attention.md; python -m
experiments.attention_study --root=runs/attention
--steps=dates:1000,numbers:1000 --doc=docs/attention.md): 1,000 steps of 64, seeds
0, 1, 2, mean ± std on the test numbers, greedy exact match / BLEU / chrF,
one core per run:
  additive             99.9 ± 0.0% / 100.0 / 100.0, 278 s
  scaled_dot           99.9 ± 0.1% / 100.0 / 100.0, 143 s
  dot (:dot)           99.7 ± 0.1% / 100.0 / 100.0, 142 s
  general (:general)   99.3 ± 0.6% / 99.8 / 99.9, 152 s
  no attention (:none) 11.7 ± 18.2% / 80.7 ± 4.0 / 80.2 ± 6.4, 114 s
"""
from rnnlab import recipes


def get_config(arg: str = ""):
  c = recipes.seq2seq_config("numbers", arg, batch_size=64)
  if "runlocal" in arg.split(","):
    c.seq2seq.max_value = 1000  # quicker to write out
  return c
