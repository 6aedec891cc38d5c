"""JapaneseVowels (UEA; Kudo et al. 1999): which of 9 speakers said /ae/,
from 7-29 frames of 12 LPC cepstrum coefficients. A bidirectional GRU reads
each right-padded utterance with masking (padding changes nothing) and
classifies the last state of each direction.

  python -m rnnlab.main --config=configs/gru_japanese_vowels.py --workdir=runs/jv_gru
  python -m rnnlab.main --config=configs/gru_japanese_vowels.py:pooling=mean --workdir=runs/jv_gru_mean
  python -m rnnlab.main --config=configs/gru_japanese_vowels.py:runlocal --workdir=/tmp/jv

Data: sktime's copy of the UEA .ts files (no network); 270 training
utterances, of which 54 (6 per speaker, stratified, seeded by config.seed)
are held out for validation, and the 370 test utterances. Features are
standardised with the training part's statistics. The validation loss picks
the best checkpoint (<workdir>/best/); its test accuracy is written to
<workdir>/best_eval.json. Recipe: rnnlab.recipes.japanese_vowels_config.

Measured (2026-11-26, this 2-core CPU shared with other jobs (load average
6-8), jax 0.10.2; the first command with --config.seed=0/1/2): test accuracy
of the checkpoint chosen on validation loss (<workdir>/best_eval.json)
97.57% +- 0.81 (364, 358, 361 of 370), validation 98.77% +- 1.07 (53, 53,
54 of 54); best steps 125, 350, 300. Wall clock of the whole command 43 s,
37 s, 34 s (30,857 parameters). With :pooling=mean: 97.57% +- 0.72 test
(359, 360, 364 of 370). docs/classification.md has the table.
"""
from rnnlab import recipes


def get_config(arg: str = ""):
  return recipes.japanese_vowels_config(arg, cell="gru")
