"""Sentiment of Rotten Tomatoes review snippets (fresh / rotten), through
rnnlab's own TFDS dataset: word tokens -> 64-dim embedding -> bidirectional
GRU (128 units per direction, masked) -> last state of each direction ->
Dense(2).

  python -m rnnlab.main --config=configs/gru_rotten_tomatoes.py --workdir=runs/rt_gru
  python -m rnnlab.main --config=configs/gru_rotten_tomatoes.py:cell=lstm --workdir=runs/rt_lstm
  python -m rnnlab.main --config=configs/gru_rotten_tomatoes.py:cell=rnn,bidirectional=false,pooling=mean --workdir=runs/rt_rnn
  python -m rnnlab.main --config=configs/gru_rotten_tomatoes.py:runlocal --workdir=/tmp/rt
  python -m rnnlab.classify --workdir=runs/rt_gru --text="A gorgeous, witty film."

Data: rnnlab/data/rotten_tomatoes.py, a TFDS builder (ArrayRecord, read
with tfds.data_source, no TensorFlow) of the file
rotten_tomatoes_corpus_full.csv.bz2, found in classify.tfds_manual_dir,
else $RNNLAB_DATA_DIR/rotten_tomatoes, else TFDS's manual directory; the
first run prepares it into classify.tfds_data_dir (default
~/tensorflow_datasets) and later runs reuse it. Splits by movie, seeded:
train 10,259 / validation 1,242 / test 1,251 snippets; always answering
"fresh" scores 54.4% on test. Validation picks the best checkpoint
(<workdir>/best/, best_eval.json); labels with `python -m rnnlab.classify`.

arg: "cell=<rnn|lstm|gru>", "bidirectional=<true|false>",
"pooling=<last|mean|max>", "runlocal", comma-separated.

Measured: not yet (the study of issue 16 is still to run).
"""
from rnnlab import recipes


def get_config(arg: str = ""):
  c = recipes.text_config("rotten_tomatoes", arg, cell="gru",
                          val_split="validation")
  c.classify.train_split = "train"
  return c
