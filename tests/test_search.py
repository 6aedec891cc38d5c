"""Hyperparameter search: the ranges sample what they say (seeded), bad
ranges and keys are refused, random search is a pure function of (space,
trials, seed) and a rerun skips done trials, TPE resumes its study without
retraining, re-runs a trial it left unfinished and goes on after a failed
one, and the objective comes from the task."""
from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from rnnlab import search
from rnnlab import sweep
from rnnlab.errors import UserError
from rnnlab.search import Choice, IntRange, LogUniform, Uniform
from tests.helpers import ROOT, tiny_sweep

SEARCH = """
from rnnlab.search import Choice, LogUniform
def get_search(arg=""):
  return {"optim.learning_rate": LogUniform(1e-3, 3e-2),
          "model.cell": Choice(["rnn", "gru"])}
"""


def draws(r, n: int = 4000, seed: int = 0) -> list:
  rng = np.random.default_rng(seed)
  return [r.sample(rng) for _ in range(n)]


# --- ranges -------------------------------------------------------------------

def test_log_uniform_is_uniform_in_log_space():
  values = draws(LogUniform(1e-4, 1.0))
  assert all(type(v) is float and 1e-4 <= v <= 1.0 for v in values)
  assert all(v == float(f"{v:.4g}") for v in values)  # 4 significant digits
  # The median is the geometric mean, 1e-2 (uniform sampling: about 0.5).
  assert abs(math.log10(np.median(values)) + 2) < 0.1
  # A quarter of the draws in each decade.
  per_decade = np.histogram(np.log10(values), bins=4, range=(-4, 0))[0]
  assert np.all(np.abs(per_decade / len(values) - 0.25) < 0.03)


def test_uniform_int_range_and_choice_sample_their_values():
  values = draws(Uniform(0.0, 0.5))
  assert all(type(v) is float and 0.0 <= v <= 0.5 for v in values)
  assert abs(np.median(values) - 0.25) < 0.02
  ints = draws(IntRange(2, 9))
  assert all(type(v) is int for v in ints) and set(ints) == set(range(2, 10))
  log_ints = draws(IntRange(1, 100, log=True))
  assert all(type(v) is int and 1 <= v <= 100 for v in log_ints)
  assert {1, 100} <= set(log_ints)  # both ends included
  assert 5 <= np.median(log_ints) <= 9  # ~sqrt(0.5 x 100.5); linear: ~50
  cells = draws(Choice(["rnn", "gru", "lstm"]), n=300)
  assert set(cells) == {"rnn", "gru", "lstm"}
  assert draws(Choice([[1, 2], [3]]), n=50)[0] in ((1, 2), (3,))  # tuples


@pytest.mark.parametrize("make, message", [
    (lambda: LogUniform(0, 1), "low=0 must be > 0"),
    (lambda: LogUniform(1e-2, 1e-3), "low=0.01 must be below high=0.001"),
    (lambda: Uniform(0.5, 0.5), "low=0.5 must be below high=0.5"),
    (lambda: Uniform(0, math.inf), "finite numbers"),
    (lambda: IntRange(1.5, 4), "must be integers"),
    (lambda: IntRange(8, 2), "low=8 must be below high=2"),
    (lambda: IntRange(0, 8, log=True), "low=0 must be >= 1 with log=True"),
    (lambda: Choice([]), "at least one value"),
    (lambda: Choice("gru"), "give a list of values"),
    (lambda: Choice(["gru", "gru"]), "repeats 'gru'"),
])
def test_bad_ranges_name_the_bad_value(make, message):
  with pytest.raises(UserError, match=message):
    make()


def test_random_trials_are_a_pure_function_of_space_count_and_seed():
  space = {"optim.learning_rate": LogUniform(1e-4, 1e-1),
           "model.hidden_size": IntRange(16, 256, log=True),
           "model.cell": Choice(["rnn", "gru", "lstm"])}
  trials = search.random_trials(space, 5, seed=3)
  assert trials == search.random_trials(space, 5, seed=3)
  assert trials != search.random_trials(space, 5, seed=4)
  assert search.random_trials(space, 8, seed=3)[:5] == trials  # a prefix
  # Trial k is drawn from default_rng([seed, k]), key by key.
  rng = np.random.default_rng([3, 2])
  assert trials[2] == {k: r.sample(rng) for k, r in space.items()}
  assert list(trials[0]) == list(space)
  assert len({json.dumps(t) for t in trials}) == 5


def test_random_trials_are_distinct_and_no_more_than_the_space_has():
  space = {"model.cell": Choice(["rnn", "gru"]),
           "model.num_layers": IntRange(1, 2)}
  trials = search.random_trials(space, 4, seed=0)
  assert sorted(map(str, trials)) == sorted(map(str, [
      {"model.cell": c, "model.num_layers": n}
      for c in ("rnn", "gru") for n in (1, 2)]))
  with pytest.raises(UserError, match="more than the 4 distinct trials"):
    search.random_trials(space, 5, seed=0)


@pytest.mark.parametrize("space, message", [
    ({"data.val_fraction": Uniform(0.1, 0.2)},
     "config.data.val_fraction was renamed: use config.text.val_fraction"),
    ({"optim.learning_rat": LogUniform(1e-4, 1e-2)},
     "Unknown search key 'optim.learning_rat'. Did you mean "
     "'optim.learning_rate'"),
    ({"learning_rate": LogUniform(1e-4, 1e-2)}, "'optim.learning_rate'"),
    ({"zzz.qqq": Uniform(0, 1)}, "sections: .*model, optim"),
    ({"seed": [0, 1]}, "give a range"),
    ({"train.steps": LogUniform(10, 100)}, "is an integer.*use IntRange"),
    ({"model.cell": Uniform(0, 1)}, "takes a str.*use Choice"),
    ({"model.cell": Choice(["gru", 1])}, "Choice value 1 is not"),
    ({"model.dropout_rate": Uniform(0.1, 1.5)},
     r"config.model.dropout_rate=1.5, which must be in \[0, 1\)"),
    ({}, "non-empty dict"),
])
def test_bad_search_spaces_are_refused(space, message):
  with pytest.raises(UserError, match=message):
    search.check_space(space)


def test_good_search_space_passes():
  space = {"optim.learning_rate": LogUniform(1e-4, 1e-2),
           "model.hidden_size": IntRange(32, 512, log=True),
           "model.dropout_rate": Uniform(0.0, 0.5),
           "optim.weight_decay": Choice([0, 1e-4]),  # ints fit a float key
           "model.cell": Choice(["gru", "lstm"])}
  assert search.check_space(space) == space


# --- the objective ------------------------------------------------------------

def test_objective_comes_from_the_task():
  classify = f"{ROOT / 'configs' / 'gru_japanese_vowels.py'}"
  lm = f"{ROOT / 'configs' / 'gru_shakespeare.py'}:runlocal"
  assert search.task_objective(classify) == ("val/accuracy", "max")
  assert search.task_objective(lm) == ("val/loss", "min")
  assert search.objective(classify, None, None) == ("val/accuracy", "max")
  assert search.objective(classify, None, "min") == ("val/accuracy", "min")
  # Both flags: the config is not even read.
  assert search.objective("missing.py", "val/loss", "min") == (
      "val/loss", "min")
  with pytest.raises(UserError, match="give --mode=min or --mode=max"):
    search.objective(classify, "val/loss", None)


def test_a_classify_search_maximises_accuracy(tmp_path, capsys):
  config = tmp_path / "jv_search.py"
  config.write_text(textwrap.dedent("""
      from rnnlab import recipes
      from rnnlab.search import LogUniform
      def get_config(arg=""):
        return recipes.japanese_vowels_config(arg, cell="gru")
      def get_search(arg=""):
        return {"optim.learning_rate": LogUniform(1e-4, 1e-2)}
      """))
  root = tmp_path / "s"
  assert sweep.main([f"--config={config}", f"--root={root}",
                     "--search=random", "--trials=3", "--pending"]) == 0
  assert capsys.readouterr().out == "0-2\n"
  record = json.loads((root / "search.json").read_text())
  assert (record["objective"], record["direction"]) == ("val/accuracy",
                                                        "max")


def test_objective_value_is_the_best_over_the_run(tmp_path):
  write_run(tmp_path, [2.0, 1.0, 1.5])
  assert sweep.objective_value(tmp_path, "val/loss", "min") == 1.0
  assert sweep.objective_value(tmp_path, "val/loss", "max") == 2.0
  with pytest.raises(UserError, match="no 'val/accuracy'.*It has: "
                     "val/loss"):
    sweep.objective_value(tmp_path, "val/accuracy", "max")


def write_run(workdir, val_losses, status="done"):
  """A finished trial's files, as the trainer writes them."""
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / "status.json").write_text(json.dumps({"status": status}))
  (workdir / "metrics.jsonl").write_text("".join(
      json.dumps({"step": 2 * (i + 1), "split": "val", "loss": v}) + "\n"
      for i, v in enumerate(val_losses)))


# --- random search, through rnnlab.sweep --------------------------------------

def test_random_search_reruns_the_same_trials_and_skips_done_ones(
    tmp_path, capsys):
  config, root = tiny_sweep(tmp_path, get_sweep=SEARCH)
  args = [f"--config={config}", f"--root={root}", "--search=random",
          "--trials=3", "--seed=7"]
  assert sweep.main([*args, "--pending"]) == 0
  assert capsys.readouterr().out == "0-2\n"
  manifest = (root / "trials.json").read_text()
  names = [t["name"] for t in json.loads(manifest)["trials"].values()]
  assert sweep.main([*args, "--pending"]) == 0  # a rerun: the same trials
  assert (root / "trials.json").read_text() == manifest
  assert names[0].startswith("learning_rate=") and ",cell=" in names[0]
  # Finish them by hand (no training); the best value of each run ranks
  # it, not the last: by the last the order would be the reverse.
  runs = {names[0]: [1.0, 3.0], names[1]: [2.0, 2.0], names[2]: [1.5, 2.5]}
  for name, losses in runs.items():
    write_run(root / name, losses)
  assert sweep.main(args) == 0
  out = capsys.readouterr().out
  assert out.count("done before, skipped") == 3 and ": done in" not in out
  table = (root / "report.md").read_text().splitlines()
  assert table[0].startswith("| optim.learning_rate | model.cell | "
                             "min val/loss |")
  assert [float(line.split("|")[3]) for line in table[2:]] == [1.0, 1.5, 2.0]
  assert (root / "params.png").stat().st_size > 0
  record = json.loads((root / "search.json").read_text())
  assert record["method"] == "random" and record["seed"] == 7
  assert record["space"]["model.cell"] == {"kind": "Choice",
                                           "values": ["rnn", "gru"]}
  assert (record["objective"], record["direction"]) == ("val/loss", "min")
  # More trials keep the first three: only the new one is pending.
  assert sweep.main([*args[:3], "--trials=4", "--seed=7", "--pending"]) == 0
  assert capsys.readouterr().out == "3\n"
  assert sweep.main([*args, "--trial=4"]) == 2
  assert "this sweep has 3 trials" in capsys.readouterr().err
  # Another seed on the same root would mix two searches.
  assert sweep.main([*args[:4], "--seed=8"]) == 2
  assert "search.json has seed=7, this search 8" in capsys.readouterr().err
  tiny_sweep(tmp_path, get_sweep=SEARCH.replace('"rnn", "gru"', '"lstm"'))
  assert sweep.main(args) == 2
  assert "has another space (changed: model.cell)" in capsys.readouterr().err


def test_search_flags_are_checked(tmp_path, capsys):
  config, root = tiny_sweep(tmp_path)  # get_sweep, no get_search
  args = [f"--config={config}", f"--root={root}"]
  assert sweep.main([*args, "--search=random", "--trials=2"]) == 2
  assert "defines no get_search(arg), which --search needs" in (
      capsys.readouterr().err)
  assert sweep.main([*args, "--trials=2"]) == 2
  assert "--trials and --seed apply to --search" in capsys.readouterr().err
  tiny_sweep(tmp_path, get_sweep=SEARCH)
  assert sweep.main([*args, "--search=random"]) == 2
  assert "--search=random needs --trials=N" in capsys.readouterr().err
  for flag in ("--trial=0", "--pending", "--parallel=2"):
    assert sweep.main([*args, "--search=tpe", "--trials=2", flag]) == 2
    err = capsys.readouterr().err
    assert "runs one trial at a time" in err and flag in err
  assert not root.exists()  # nothing ran


# --- TPE ----------------------------------------------------------------------

SPACE = {"optim.learning_rate": LogUniform(1e-4, 1e-1),
         "model.hidden_size": IntRange(8, 512, log=True),
         "model.cell": Choice(["rnn", "gru", "lstm"])}


def fake_loss(overrides) -> float:
  """A deterministic objective with its minimum at lr 1e-2, 64 units."""
  return (abs(math.log10(overrides["optim.learning_rate"]) + 2) +
          abs(math.log2(overrides["model.hidden_size"] / 64)) / 4 +
          (overrides["model.cell"] == "rnn"))


def states(root) -> list[str]:
  return [state for _, state in search.study_trials(root, SPACE)]


def test_tpe_is_seeded_and_a_resumed_study_draws_what_an_unbroken_one_does(
    tmp_path):
  # 12 trials: past TPE's 10 random start-up ones, into the model's.
  whole = search.run_tpe(tmp_path / "a", SPACE, 12, 0, "min", fake_loss,
                         log=lambda _: None)
  search.run_tpe(tmp_path / "b", SPACE, 5, 0, "min", fake_loss)
  resumed = search.run_tpe(tmp_path / "b", SPACE, 12, 0, "min", fake_loss)
  assert resumed == whole and len(whole) == 12
  assert len({json.dumps(t) for t in whole}) == 12
  assert all(type(t["model.hidden_size"]) is int and
             type(t["optim.learning_rate"]) is float for t in whole)
  assert all(t["optim.learning_rate"] == float(
      f"{t['optim.learning_rate']:.4g}") for t in whole)
  other = search.run_tpe(tmp_path / "c", SPACE, 3, 1, "min", fake_loss)
  assert other != whole[:3]


def test_tpe_reruns_an_unfinished_trial_and_goes_on_after_a_failure(
    tmp_path):
  calls = []

  def crash_on_second(overrides):
    calls.append(overrides)
    if len(calls) == 2:
      raise KeyboardInterrupt  # the search dies mid-trial
    return fake_loss(overrides)

  with pytest.raises(KeyboardInterrupt):
    search.run_tpe(tmp_path, SPACE, 3, 0, "min", crash_on_second)
  assert states(tmp_path) == ["COMPLETE", "RUNNING"]
  unfinished = calls[1]
  calls.clear()

  def fail_second(overrides):
    calls.append(overrides)
    return None if len(calls) == 2 else fake_loss(overrides)

  trials = search.run_tpe(tmp_path, SPACE, 4, 0, "min", fail_second)
  assert calls[0] == unfinished  # run again first, under its number
  assert len(calls) == 3 and trials[1] == unfinished
  assert states(tmp_path) == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE"]


def test_one_tpe_search_per_root(tmp_path):
  import fcntl  # pylint: disable=g-import-not-at-top
  with (tmp_path / ".study.lock").open("w") as held:  # another search's
    fcntl.flock(held, fcntl.LOCK_EX)
    with pytest.raises(UserError, match="Another TPE search is running"):
      search.run_tpe(tmp_path, SPACE, 1, 0, "min", fake_loss)
  assert not (tmp_path / "study.db").exists()


def test_search_module_imports_without_jax():
  code = "import sys, rnnlab.search; assert 'jax' not in sys.modules"
  subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_tpe_search_resumes_without_retraining(tmp_path, capsys,
                                               monkeypatch):
  # Trials in seconds: the tiny model needs no XLA optimisation passes.
  monkeypatch.setenv("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
  config, root = tiny_sweep(tmp_path, get_sweep=SEARCH)
  args = [f"--config={config}", f"--root={root}", "--search=tpe",
          "--seed=1"]
  assert sweep.main([*args, "--trials=2"]) == 0
  assert capsys.readouterr().out.count(": done in") == 2
  first = sorted(p for p in root.iterdir() if p.is_dir())
  assert len(first) == 2
  files = {p: (p.read_bytes(), p.stat().st_mtime_ns)
           for d in first for p in (d / "status.json", d / "metrics.jsonl")}
  assert sweep.main([*args, "--trials=3"]) == 0
  out = capsys.readouterr().out
  assert out.count(": done in") == 1 and "skipped" not in out
  assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files} == files
  # The study holds 3 trials, each told its run's best val/loss.
  import optuna  # pylint: disable=g-import-not-at-top
  study = optuna.load_study(study_name=search.STUDY_NAME,
                            storage=f"sqlite:///{root / 'study.db'}")
  assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
  for t in study.trials:
    workdir = root / sweep.trial_name(
        {k: r.from_optuna(t.params[k]) for k, r in
         sweep.load_search(str(config)).items()})
    assert t.value == sweep.objective_value(workdir, "val/loss", "min")
  assert json.loads((root / "search.json").read_text())["method"] == "tpe"
  assert len((root / "report.md").read_text().splitlines()) == 2 + 3
  assert (root / "params.png").stat().st_size > 0
  # At --trials=3 already: nothing runs (the seed as search.json says).
  assert sweep.main([*args[:3], "--trials=3"]) == 0
  assert "nothing to run" in capsys.readouterr().out
