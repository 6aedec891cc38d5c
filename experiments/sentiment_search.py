"""Search: the Rotten Tomatoes recipe's learning rate, dropout, hidden size
and embedding size, by random search or TPE (rnnlab.search), each trial a
whole run of configs/gru_rotten_tomatoes.py scored by its task's objective
(the best validation accuracy of the run).

  python -m rnnlab.sweep --config=experiments/sentiment_search.py \
      --root=runs/sentiment_random --search=random --trials=16
  python -m rnnlab.sweep --config=experiments/sentiment_search.py \
      --root=runs/sentiment_tpe --search=tpe --trials=16
  python -m rnnlab.sweep --config=experiments/sentiment_search.py:runlocal \
      --root=/tmp/search --search=random --trials=2      # seconds, a smoke test

Each writes <root>/report.md (trials ranked), curves.png and params.png
(the objective against each parameter). The test accuracy of a pick is read
from its best_eval.json, never used to choose.
"""
import pathlib

from rnnlab import base_config
from rnnlab.search import IntRange, LogUniform, Uniform

_CONFIG = pathlib.Path(__file__).resolve().parents[1] / "configs" / (
    "gru_rotten_tomatoes.py")


def get_config(arg: str = ""):
  c = base_config.load_file(f"{_CONFIG}:{arg}" if arg else str(_CONFIG))
  # The recipe as it was searched, before word dropout, the weight average
  # and the ensemble joined it (docs/classification.md), so the search
  # reproduces.
  c.classify.word_dropout, c.optim.ema_decay = 0.0, 0.0
  c.classify.ensemble_size = 1
  return c


def get_search(arg: str = ""):
  del arg
  return {"optim.learning_rate": LogUniform(3e-4, 1e-2),
          "model.dropout_rate": Uniform(0.1, 0.7),
          "model.hidden_size": IntRange(32, 256, log=True),
          "model.embed_dim": IntRange(32, 256, log=True)}
