"""experiments/attention_study.py without training: its trials, its table
and its refusals."""
from __future__ import annotations

from experiments import attention_study as study


def test_every_attention_and_seed_is_a_trial():
  t = study.trials(study.ATTENTIONS, [0, 1, 2])
  assert len(t) == 5 * 3 and {"seq2seq.attention": "none", "seed": 2} in t


def test_the_table_has_bleu_only_for_the_translation():
  row = lambda problem, attention: {
      "problem": problem, "attention": attention, "greedy": [0.5, 0.7],
      "beam": [0.6, 0.6], "bleu": [40.0, 50.0], "chrf": [60.0, 70.0],
      "wall": [10.0, 20.0], "status": ["done"],
      "steps": [3000] if problem == "addition" else [1000],
      "cpus": [2] if problem == "addition" else [1]}
  copies = {"numbers": {"exact_match": [0.01, 0.03], "bleu": [1.0, 3.0],
                        "chrf": [10.0, 10.0]}}
  text = study.markdown([row("addition", "dot"), row("numbers", "dot")],
                        copies, [0, 1], "python -m experiments.attention_study")
  assert "**addition**, 3,000 steps" in text
  assert "**numbers**, 1,000 steps" in text
  addition = text[text.index("**addition**"):text.index("**numbers**")]
  numbers = text[text.index("**numbers**"):]
  assert "| dot | 60.0 ± 14.1 | 60.0 ± 0.0 | 15 s |" in addition
  assert "Wall per run (2 cores) |" in addition
  assert "Wall per run (1 core) |" in numbers
  assert "BLEU" not in addition
  assert "| dot | 60.0 ± 14.1 | 60.0 ± 0.0 | 45.0 ± 7.1 | 65.0 ± 7.1 | 15 s |" \
      in numbers
  assert "| copy the source | 2.0 ± 1.4 | | 2.0 ± 1.4 | 10.0 ± 0.0 | |" \
      in numbers
  assert text.startswith(study.BEGIN) and text.rstrip().endswith(study.END)


def test_unknown_problems_and_attentions_are_refused(capsys):
  assert study.main(["--root=/nonexistent", "--doc=/nonexistent/d.md",
                     "--problems=sums"]) == 2
  assert "--problems: unknown ['sums']" in capsys.readouterr().err
  assert study.main(["--root=/nonexistent", "--doc=/nonexistent/d.md",
                     "--attentions=dot,luong"]) == 2
  assert "Valid choices: none, additive" in capsys.readouterr().err


def test_steps_per_problem_are_parsed_and_bad_ones_refused(capsys):
  assert study.parse_steps("dates:1000,numbers:500") == {"dates": 1000,
                                                         "numbers": 500}
  assert study.parse_steps("") == {}
  for bad in ("dates:x", "dates", "sums:10", "numbers:0"):
    assert study.main(["--root=/nonexistent", "--doc=/nonexistent/d.md",
                       f"--steps={bad}"]) == 2
    assert (f"--steps: {bad!r} is not problem:N with problem one of "
            "addition, dates, numbers") in capsys.readouterr().err
