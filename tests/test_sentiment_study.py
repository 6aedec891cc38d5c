"""experiments/sentiment_study.py: its baselines and its report, without
training (the trials are rnnlab.sweep's, tested there)."""
from __future__ import annotations

from experiments import sentiment_study


def _splits():
  good = ["a great film", "great fun", "a moving great story", "so great"]
  bad = ["a dull film", "dull and long", "a tedious dull story", "so dull"]
  rows = lambda texts, label: [{"text": t, "category": label} for t in texts]
  return {"train": rows(good, "fresh") + rows(bad[:3], "rotten"),
          "validation": rows(["great"], "fresh") + rows(["dull"], "rotten"),
          "test": rows(["great story", "great"], "fresh") +
                  rows(["dull story"], "rotten")}


def test_bag_of_words_picks_c_on_validation_and_scores_test():
  bow = sentiment_study.bag_of_words(_splits())
  assert bow["C"] in sentiment_study.BOW_C
  assert bow["validation"] == max(s["validation"]
                                  for s in bow["all"].values())
  assert bow["validation"] == 1.0  # "great" and "dull" decide it
  assert bow["test"] == bow["all"][str(bow["C"])]["test"]
  # Ties on validation go to the strongest regularisation (smallest C).
  assert bow["C"] == min(float(c) for c, s in bow["all"].items()
                         if s["validation"] == 1.0)
  major = sentiment_study.majority(_splits())
  assert major == {"label": "fresh", "test": 2 / 3}


def test_trials_cover_cells_directions_poolings_and_seeds():
  trials = sentiment_study.trials(["gru", "rnn"], [0, 1, 2])
  assert len(trials) == 2 * 2 * 2 * 3
  assert len({tuple(sorted(t.items())) for t in trials}) == len(trials)


def test_the_report_replaces_only_the_part_between_its_markers(tmp_path):
  doc = tmp_path / "doc.md"
  begin, end = sentiment_study.BEGIN, sentiment_study.END
  doc.write_text(f"# Title\n\nbefore\n{begin}\nold table\n{end}\nafter\n")
  sentiment_study.write_doc(doc, f"{begin}\nnew table\n{end}")
  assert doc.read_text() == (f"# Title\n\nbefore\n{begin}\nnew table\n{end}"
                             "\nafter\n")
  other = tmp_path / "new.md"
  sentiment_study.write_doc(other, "whole")
  assert other.read_text() == "whole\n"


def test_the_regularisers_study_replaces_only_its_own_part(tmp_path):
  from experiments import sentiment_regularisers as reg  # pylint: disable=g-import-not-at-top
  assert len(reg.trials(["gru", "lstm"], [0, 1, 2])) == 2 * 5 * 3
  assert {"classify.word_dropout": 0.2, "optim.ema_decay": 0.99,
          "classify.ensemble_size": 1, "model.cell": "gru",
          "seed": 1} in reg.trials(["gru"], [1])
  assert {t["classify.ensemble_size"] for t in reg.trials(["gru"], [1])} == {
      1, 3}
  # Every variant sets every key: the study does not follow the config's
  # defaults.
  assert all({"classify.word_dropout", "optim.ema_decay",
              "classify.ensemble_size"} <= set(t)
             for t in reg.trials(["lstm"], [0]))
  doc = tmp_path / "doc.md"
  doc.write_text(f"intro\n{sentiment_study.BEGIN}\nstudy\n"
                 f"{sentiment_study.END}\nmiddle\n{reg.BEGIN}\nold\n{reg.END}"
                 "\nend\n")
  sentiment_study.write_doc(doc, f"{reg.BEGIN}\nnew\n{reg.END}", reg.BEGIN,
                            reg.END)
  assert doc.read_text() == (
      f"intro\n{sentiment_study.BEGIN}\nstudy\n{sentiment_study.END}\n"
      f"middle\n{reg.BEGIN}\nnew\n{reg.END}\nend\n")
