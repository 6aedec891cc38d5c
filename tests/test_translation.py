"""The number-words translation problem and the translation metrics."""
from __future__ import annotations

import collections
import json
import math
import os
import subprocess
import sys

import pytest

from rnnlab import train
from rnnlab import translation_metrics
from rnnlab.data import seq2seq as data
from rnnlab.errors import UserError
from rnnlab.tasks import seq2seq as seq2seq_task
from tests.helpers import ROOT
from tests.helpers import tiny_config


def _textbook_bleu(hypotheses, references, max_n=4):
  """Papineni et al.'s corpus BLEU on whitespace tokens, in plain Python:
  clipped n-gram precisions, their geometric mean, the brevity penalty."""
  matched, total = [0] * max_n, [0] * max_n
  hyp_len = ref_len = 0
  for hyp, ref in zip(hypotheses, references):
    h, r = hyp.split(), ref.split()
    hyp_len, ref_len = hyp_len + len(h), ref_len + len(r)
    for n in range(1, max_n + 1):
      hc = collections.Counter(tuple(h[i:i + n]) for i in range(len(h) - n + 1))
      rc = collections.Counter(tuple(r[i:i + n]) for i in range(len(r) - n + 1))
      matched[n - 1] += sum(min(c, rc[g]) for g, c in hc.items())
      total[n - 1] += max(len(h) - n + 1, 0)
  log_precision = sum(math.log(m / t) for m, t in zip(matched, total)) / max_n
  brevity = min(0.0, 1 - ref_len / hyp_len)
  return 100 * math.exp(log_precision + brevity)


def test_bleu_matches_the_textbook_formula_and_chrf_its_bounds():
  refs = ["one thousand seven hundred and fifty six",
          "twenty seven thousand and one", "ninety nine"]
  hyps = ["one thousand seven hundred and fifty five",
          "twenty seven thousand and one", "ninety"]
  got = translation_metrics.score(hyps, refs)
  assert got["bleu"] == pytest.approx(_textbook_bleu(hyps, refs), rel=1e-9)
  assert 0 < got["bleu"] < 100 and got["exact_match"] == pytest.approx(1 / 3)
  assert 0 < got["chrf"] < 100
  same = translation_metrics.score(refs, refs)
  assert same == {"bleu": pytest.approx(100), "chrf": pytest.approx(100),
                  "exact_match": 1.0}
  assert translation_metrics.score(["zzz"], ["one"])["chrf"] == 0
  with pytest.raises(UserError, match="2 hypotheses for 1 references"):
    translation_metrics.score(["a", "b"], ["a"])


def test_number_words_hold_out_whole_values_fixed_by_seed():
  problem = data.NumberWords(3, "fr", "en", max_value=1000, num_val=50,
                             num_test=100)
  test, val = problem.split_values("test"), problem.split_values("val")
  assert len(test) == 100 and len(val) == 50 and not test & val
  held = {problem.source[v] for v in test | val}
  for step in range(20):
    for source, target in problem.train_examples(64, step):
      assert source not in held
      assert target == data.number_words(problem.source.index(source), "en")
  assert (problem.source[97], problem.target[97]) == (
      "quatre-vingt-dix-sept", "ninety-seven")
  pairs = problem.eval_examples("test")
  assert pairs == data.NumberWords(3, "fr", "en", max_value=1000, num_val=50,
                                   num_test=100).eval_examples("test")
  assert pairs != data.NumberWords(4, "fr", "en", max_value=1000, num_val=50,
                                   num_test=100).eval_examples("test")
  assert all(len(s) <= problem.max_source_len and
             len(t) < problem.max_target_len for s, t in pairs)
  assert set("".join(s + t for s, t in pairs)) <= set(problem.chars())


@pytest.mark.parametrize("args,message", [
    (("xx", "en", 1000, 10, 10), r"Unknown seq2seq.source_language 'xx'\. "
     r"Valid choices: 'de', 'en'"),
    (("fr", "fr", 1000, 10, 10), "both 'fr'"),
    (("fr", "en", 10**7, 10, 10), "max_value=10000000 must be in"),
    (("fr", "en", 1000, 400, 200), "Too many held-out values"),
])
def test_number_words_bad_arguments_are_clear_errors(args, message):
  with pytest.raises(UserError, match=message):
    data.NumberWords.check_args(*args)


def test_a_numbers_run_reports_bleu_and_translates_new_input(tmp_path):
  c = tiny_config("gru_seq2seq_numbers", seq2seq__max_value=300,
                  seq2seq__num_val=20, seq2seq__num_test=30,
                  seq2seq__beam_size=1, seq2seq__attention_plots=1,
                  train__steps=8, train__eval_every=8,
                  train__checkpoint_every=8, train__sample_every=0)
  workdir = tmp_path / "run"
  results = train.train_and_evaluate(c, workdir)
  test = results["eval"]["test"]
  assert {"accuracy", "bleu", "chrf", "loss"} <= set(test)
  assert 0 <= test["bleu"] <= 100 and 0 <= test["chrf"] <= 100
  assert (workdir / "attention" / "test_0.png").exists()
  run = seq2seq_task.load_translator(workdir)
  assert run.checkpoint == "best" and run.step == 8
  # The copy baseline: only "six" is written alike in French and English.
  copy = run.task.copy_baseline("test")
  sources = [s for s, _ in run.task.eval_pairs("test")[0]]
  assert copy["exact_match"] == pytest.approx(sources.count("six") / 30)
  # Decoding is the task's own: the same strings as its greedy predictions.
  pairs, encoded = run.task.eval_pairs("test")
  want = run.task.predict(run.params, {k: v[:3] for k, v in encoded.items()})
  assert run.translate([s for s, _ in pairs[:3]]) == want
  with pytest.raises(UserError, match="Input 1 is empty"):
    run.translate(["un", ""])
  with pytest.raises(UserError, match=r"Characters not in the vocabulary: "
                     r"\['!'\]"):
    run.translate(["un!"])
  # The command.
  plot = tmp_path / "attention.png"
  proc = subprocess.run(
      [sys.executable, "-m", "rnnlab.translate", f"--workdir={workdir}",
       "--text=vingt et un", "--text=cent", "--json",
       f"--attention_plot={plot}"],
      capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
      env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert proc.returncode == 0, proc.stderr
  out = [json.loads(line) for line in proc.stdout.splitlines()]
  assert [o["input"] for o in out] == ["vingt et un", "cent"]
  assert [o["output"] for o in out] == run.translate(["vingt et un", "cent"])
  assert plot.exists()
