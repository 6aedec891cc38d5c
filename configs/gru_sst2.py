"""Sentiment of movie-review sentences (GLUE SST-2) through TFDS: word
tokens -> 64-dim embedding -> bidirectional GRU (128 units per direction,
masked) -> last state of each direction -> positive / negative.

  python -m rnnlab.main --config=configs/gru_sst2.py --workdir=runs/sst2_gru
  python -m rnnlab.main --config=configs/gru_sst2.py:runlocal --workdir=/tmp/sst2
  # Any TFDS text classification set, e.g. IMDB reviews:
  python -m rnnlab.main --config=configs/gru_sst2.py --workdir=runs/imdb_gru \
      --config.classify.tfds_name=imdb_reviews --config.classify.text_feature=text \
      --config.classify.test_split=test --config.classify.max_tokens=256

Data: tfds.data_source("glue/sst2") (ArrayRecord; no TensorFlow needed, but
`importlib_resources` is). A prepared copy under classify.tfds_data_dir (default
$TFDS_DATA_DIR or ~/tensorflow_datasets) is used as is; otherwise TFDS
downloads and prepares it, after a 10 s reachability check that fails with
instructions when there is no network (RNNLAB_OFFLINE=1: no download at
all). GLUE's test split is unlabelled, so the 872 validation sentences are
the test set here, and 5% of the 67,349 training sentences (stratified) are
held out for validation, which picks the best checkpoint. The vocabulary is
the 20,000 most frequent training words (with <pad>, <unk>), saved in
<workdir>/metadata.json. Recipe: rnnlab.recipes.text_config.

Measured: not trained on real data. This machine has no network and no
prepared copy of glue/sst2, so the data cannot be obtained here and no
accuracy is claimed. What was measured (2026-11-26, 2-core CPU, jax 0.10.2)
is the runlocal variant under tfds.testing.mock_data (random letters, random
labels) running end to end, 20 steps in about 22 s with word and with char
tokens, and the offline error path: the command exits after about 2 s
(imports included) with the how-to-prepare message.
"""
from rnnlab import recipes


def get_config(arg: str = ""):
  return recipes.text_config("glue/sst2", arg, cell="gru",
                             text_feature="sentence",
                             test_split="validation")
