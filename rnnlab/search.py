"""Hyperparameter search spaces, and the random and TPE samplers.

A config defines its search space beside `get_config`, as it would a sweep:

    from rnnlab.search import Choice, IntRange, LogUniform, Uniform

    def get_search(arg):
      return {"optim.learning_rate": LogUniform(1e-4, 1e-2),
              "model.hidden_size": IntRange(32, 512, log=True),
              "model.dropout_rate": Uniform(0.0, 0.5),
              "model.cell": Choice(["gru", "lstm"])}

`rnnlab.sweep --search=random|tpe` runs it (the module docstring there has
the commands). Random search is a pure function of (space, number of
trials, seed): trial k draws from np.random.default_rng([seed, k]), so a
rerun or a SLURM array task recomputes the same trials. TPE (Optuna's
Tree-structured Parzen Estimator) picks each trial from the results before
it, so it runs one trial at a time; its study lives in <root>/study.db
(SQLite), which a rerun resumes.

Floats are rounded to 4 significant digits, ints are Python ints: trial
names (`sweep.trial_name`) stay readable, and a TPE trial runs the rounded
value (Optuna keeps its own, a relative 5e-5 away at most).

This module imports no trainer code (nor jax); optuna is imported only by
the TPE functions.
"""
from __future__ import annotations

import contextlib
import dataclasses
import difflib
import json
import math
import os
import pathlib
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from rnnlab import base_config
from rnnlab.errors import UserError

Overrides = dict[str, Any]

STUDY_FILE = "study.db"
STUDY_NAME = "rnnlab"  # one study per root
SEARCH_FILE = "search.json"
METHODS = ("random", "tpe")


# --- ranges -------------------------------------------------------------------

def _number(x) -> bool:
  return (isinstance(x, (int, float)) and not isinstance(x, bool)
          and math.isfinite(x))


def _round(x: float, low: float, high: float) -> float:
  """`x` to 4 significant digits, kept inside [low, high]."""
  return min(max(float(f"{x:.4g}"), low), high)


@dataclasses.dataclass(frozen=True)
class LogUniform:
  """A float in [low, high], uniform in log space: log(x) ~ U(log low,
  log high). For scales: learning rates, weight decay. 0 < low < high."""
  low: float
  high: float

  def __post_init__(self):
    if not (_number(self.low) and _number(self.high)):
      raise UserError(f"{self}: low and high must be finite numbers.")
    if self.low <= 0:
      raise UserError(f"{self}: low={self.low!r} must be > 0 (it is "
                      "sampled in log space); use Uniform for a range "
                      "from 0.")
    if self.low >= self.high:
      raise UserError(f"{self}: low={self.low!r} must be below "
                      f"high={self.high!r}.")

  log = True

  def sample(self, rng: np.random.Generator) -> float:
    x = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
    return _round(x, self.low, self.high)

  def bounds(self) -> tuple[Any, ...]:
    return (self.low, self.high)

  def distribution(self, optuna):
    return optuna.distributions.FloatDistribution(self.low, self.high,
                                                  log=True)

  def from_optuna(self, value) -> float:
    return _round(value, self.low, self.high)

  def to_json(self) -> dict[str, Any]:
    return {"kind": "LogUniform", "low": self.low, "high": self.high}


@dataclasses.dataclass(frozen=True)
class Uniform:
  """A float uniform in [low, high], low < high. For rates and fractions:
  dropout, momentum."""
  low: float
  high: float

  def __post_init__(self):
    if not (_number(self.low) and _number(self.high)):
      raise UserError(f"{self}: low and high must be finite numbers.")
    if self.low >= self.high:
      raise UserError(f"{self}: low={self.low!r} must be below "
                      f"high={self.high!r}.")

  log = False

  def sample(self, rng: np.random.Generator) -> float:
    return _round(rng.uniform(self.low, self.high), self.low, self.high)

  def bounds(self) -> tuple[Any, ...]:
    return (self.low, self.high)

  def distribution(self, optuna):
    return optuna.distributions.FloatDistribution(self.low, self.high)

  def from_optuna(self, value) -> float:
    return _round(value, self.low, self.high)

  def to_json(self) -> dict[str, Any]:
    return {"kind": "Uniform", "low": self.low, "high": self.high}


@dataclasses.dataclass(frozen=True)
class IntRange:
  """An int in [low, high], both included, low < high. With log=True
  (low >= 1) uniform in log space, for sizes: 32 is as likely as 256."""
  low: int
  high: int
  log: bool = False

  def __post_init__(self):
    if not (base_config.is_int(self.low) and base_config.is_int(self.high)):
      raise UserError(f"{self}: low and high must be integers.")
    object.__setattr__(self, "low", int(self.low))
    object.__setattr__(self, "high", int(self.high))
    if self.low >= self.high:
      raise UserError(f"{self}: low={self.low!r} must be below "
                      f"high={self.high!r}.")
    if self.log and self.low < 1:
      raise UserError(f"{self}: low={self.low!r} must be >= 1 with "
                      "log=True (it is sampled in log space).")

  def sample(self, rng: np.random.Generator) -> int:
    if not self.log:
      return int(rng.integers(self.low, self.high, endpoint=True))
    # Each integer owns [k - 0.5, k + 0.5) in log space, as in Optuna.
    x = math.exp(rng.uniform(math.log(self.low - 0.5),
                             math.log(self.high + 0.5)))
    return min(max(int(round(x)), self.low), self.high)

  def bounds(self) -> tuple[Any, ...]:
    return (self.low, self.high)

  def distribution(self, optuna):
    return optuna.distributions.IntDistribution(self.low, self.high,
                                                log=self.log)

  def from_optuna(self, value) -> int:
    return int(value)

  def to_json(self) -> dict[str, Any]:
    return {"kind": "IntRange", "low": self.low, "high": self.high,
            "log": self.log}


@dataclasses.dataclass(frozen=True)
class Choice:
  """One of `values` (categorical, unordered), each equally likely: cells,
  schedules, or numbers without an order worth modelling. Lists become
  tuples (a tuple-valued config key takes tuples)."""
  values: tuple[Any, ...]

  def __post_init__(self):
    if isinstance(self.values, (str, bytes)) or not hasattr(
        self.values, "__iter__"):
      raise UserError(f"Choice({self.values!r}): give a list of values.")
    values = tuple(tuple(v) if isinstance(v, list) else v
                   for v in self.values)
    object.__setattr__(self, "values", values)
    if not values:
      raise UserError("Choice([]): give at least one value.")
    repeated = [v for i, v in enumerate(values) if v in values[:i]]
    if repeated:
      raise UserError(f"Choice({list(values)!r}) repeats {repeated[0]!r}.")

  log = False

  def sample(self, rng: np.random.Generator):
    return self.values[int(rng.integers(len(self.values)))]

  def bounds(self) -> tuple[Any, ...]:
    return self.values

  def _labels(self) -> tuple[Any, ...]:
    # Optuna's categories are None, bool, int, float or str: others by repr.
    return tuple(v if v is None or isinstance(v, (bool, int, float, str))
                 else repr(v) for v in self.values)

  def distribution(self, optuna):
    return optuna.distributions.CategoricalDistribution(self._labels())

  def from_optuna(self, value):
    return self.values[self._labels().index(value)]

  def to_json(self) -> dict[str, Any]:
    return {"kind": "Choice", "values": list(self.values)}


Range = LogUniform | Uniform | IntRange | Choice
RANGES = (LogUniform, Uniform, IntRange, Choice)
Space = Mapping[str, Range]


def space_json(space: Space) -> dict[str, Any]:
  """{key: {"kind": ..., ...}}, as search.json records it (JSON types)."""
  return json.loads(json.dumps({k: r.to_json() for k, r in space.items()}))


# --- validation ---------------------------------------------------------------

def check_space(space: Space) -> dict[str, Range]:
  """`space` (get_search's {config key: range}) checked: every key a leaf
  of base_config.get_config() (an old key's name -> the rename error), every
  range of a kind and within the rule of its key. Returns it as a dict."""
  if not isinstance(space, Mapping) or not space:
    raise UserError(f"get_search returned {space!r}: give a non-empty dict "
                    "{config key: range}, e.g. {'optim.learning_rate': "
                    "LogUniform(1e-4, 1e-2)}.")
  defaults = dict(base_config.leaves(base_config.get_config()))
  for key, r in space.items():
    if not isinstance(r, RANGES):
      raise UserError(f"Search key {key!r}: give a range (LogUniform, "
                      f"Uniform, IntRange or Choice), not {r!r}.")
    check_key(key, defaults)
    _check_type(key, r, defaults[key])
    rule = base_config.RULES.get(key)
    if rule is not None and rule.test is not None:
      for value in r.bounds():
        if not rule.test(value):
          raise UserError(f"Search key {key!r}: {r} reaches "
                          f"config.{key}={value!r}, which must be "
                          f"{rule.text}.")
  return dict(space)


def check_key(key: str, defaults: Mapping[str, Any]) -> None:
  """UserError unless `key` is one of `defaults` (dotted config leaves):
  the rename error for an old name, else the close matches or sections."""
  if key in defaults:
    return
  renamed = base_config.renamed_key_error(key)
  if renamed:
    raise renamed
  leaf = key.split(".")[-1]
  close = ([k for k in defaults if k.split(".")[-1] == leaf] or
           difflib.get_close_matches(key, list(defaults), n=3))
  if close:
    hint = f"Did you mean {', '.join(map(repr, close))}?"
  else:
    sections = sorted({k.split(".")[0] for k in defaults if "." in k})
    hint = (f"Keys are dotted config leaves, e.g. 'optim.learning_rate'; "
            f"sections: {', '.join(sections)}.")
  raise UserError(f"Unknown search key {key!r}. {hint}")


def _check_type(key: str, r: Range, default) -> None:
  """A range whose values the key's type takes (configs are typed)."""
  if isinstance(r, Choice):
    for v in r.values:
      if not base_config.type_ok(v, default):
        raise UserError(f"Search key {key!r}: Choice value {v!r} is not of "
                        f"the key's type ({type(default).__name__}, "
                        f"default {default!r}).")
  elif isinstance(default, bool) or not isinstance(default, (int, float)):
    raise UserError(f"Search key {key!r} takes a {type(default).__name__} "
                    f"(default {default!r}): use Choice, not "
                    f"{type(r).__name__}.")
  elif isinstance(default, int) and not isinstance(r, IntRange):
    raise UserError(f"Search key {key!r} is an integer (default "
                    f"{default!r}): use IntRange or Choice, not "
                    f"{type(r).__name__}.")


# --- random search ------------------------------------------------------------

def space_size(space: Space) -> float:
  """How many distinct trials the space has (inf with a float range)."""
  size = 1.0
  for r in space.values():
    if isinstance(r, Choice):
      size *= len(r.values)
    elif isinstance(r, IntRange):
      size *= r.high - r.low + 1
    else:
      return math.inf
  return size


def random_trials(space: Space, num_trials: int, seed: int
                  ) -> list[Overrides]:
  """`num_trials` distinct trials ({key: value}, in the space's key order).

  Trial k draws each key in order from np.random.default_rng([seed, k]),
  and draws again from it while it repeats an earlier trial: the list is a
  pure function of (space, num_trials, seed), and the first n trials of a
  longer list are the list of n.
  """
  if not base_config.is_int(num_trials) or num_trials < 1:
    raise UserError(f"--trials={num_trials!r} must be an integer >= 1.")
  if not base_config.is_int(seed) or seed < 0:
    raise UserError(f"--seed={seed!r} must be an integer >= 0.")
  if num_trials > space_size(space):
    raise UserError(f"--trials={num_trials} is more than the "
                    f"{space_size(space):.0f} distinct trials of the space.")
  trials: list[Overrides] = []
  for k in range(num_trials):
    rng = np.random.default_rng([seed, k])
    for _ in range(1000):
      trial = {key: r.sample(rng) for key, r in space.items()}
      if trial not in trials:
        break
    else:  # e.g. Uniform(1, 1.001): 4 significant digits leave 2 values
      raise UserError(f"Trial {k} repeated an earlier one 1000 times: the "
                      "space (rounded to 4 significant digits) has too few "
                      f"distinct points for --trials={num_trials}.")
    trials.append(trial)
  return trials


# --- objective and search.json ------------------------------------------------

def task_objective(config_spec: str) -> tuple[str, str]:
  """The (metric, "min"|"max") that the task of the config "path.py[:arg]"
  optimises: TASKS[config.task].objective. Loads the config, imports the
  task registry (and config.imports); trains nothing."""
  # pylint: disable=g-import-not-at-top
  from rnnlab import registry
  from rnnlab import tasks
  config = base_config.load_file(config_spec)
  registry.import_modules(config.imports)
  return tuple(registry.lookup(tasks.TASKS, config.task, "task").objective)


def objective(config_spec: str, metric: str | None, mode: str | None
              ) -> tuple[str, str]:
  """(metric, mode): the task's objective, or --metric/--mode. A --metric
  other than the task's needs --mode: its direction cannot be guessed."""
  if mode is not None and mode not in ("min", "max"):
    raise UserError(f"Unknown mode {mode!r}. Valid choices: 'min', 'max'.")
  if metric is not None and mode is not None:
    return metric, mode
  task_metric, task_mode = task_objective(config_spec)
  if metric is None or metric == task_metric:
    return task_metric, mode or task_mode
  raise UserError(f"--metric={metric} is not the task's objective "
                  f"({task_metric}, {task_mode}): give --mode=min or "
                  "--mode=max too.")


def write_search_json(root: pathlib.Path, record: dict[str, Any],
                      same: Sequence[str]) -> pathlib.Path:
  """<root>/search.json := `record` (method, seed, space, objective,
  direction, ...), after checking that the keys `same` match the one there
  (a root holds one search)."""
  path = root / SEARCH_FILE
  if path.exists():
    old = json.loads(path.read_text())
    for key in same:
      was, now = old.get(key), record[key]
      if was == now:
        continue
      if isinstance(was, dict) and isinstance(now, dict):  # the space
        changed = sorted(k for k in {**was, **now} if was.get(k) != now.get(k))
        differ = f"another {key} (changed: {', '.join(changed)})"
      else:
        differ = f"{key}={json.dumps(was)}, this search {json.dumps(now)}"
      raise UserError(f"{path} has {differ}: a root holds one search. Use "
                      "another --root, or the first one's settings.")
  root.mkdir(parents=True, exist_ok=True)
  # Atomic: SLURM array tasks of a random search write it side by side.
  tmp = path.with_name(f".{SEARCH_FILE}.{os.getpid()}")
  tmp.write_text(json.dumps(record, indent=2) + "\n")
  os.replace(tmp, path)
  return path


# --- TPE (Optuna) -------------------------------------------------------------

def _optuna():
  try:
    import optuna  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise UserError("--search=tpe needs optuna: pip install -c "
                    "requirements/constraints.txt -e '.[search]'.") from None
  optuna.logging.set_verbosity(optuna.logging.WARNING)  # we print our own
  return optuna


def _open_study(optuna, root: pathlib.Path, direction: str | None):
  """The root's study; created (with `direction`) if there is none."""
  storage = optuna.storages.RDBStorage(f"sqlite:///{root / STUDY_FILE}")
  if direction is None:
    return optuna.load_study(study_name=STUDY_NAME, storage=storage)
  want = {"min": "minimize", "max": "maximize"}[direction]
  study = optuna.create_study(storage=storage, study_name=STUDY_NAME,
                              direction=want, load_if_exists=True)
  if study.direction.name.lower() != want:
    raise UserError(f"{root / STUDY_FILE} was created to "
                    f"{study.direction.name.lower()}, not {want}: use "
                    "another --root.")
  return study


@contextlib.contextmanager
def _exclusive(root: pathlib.Path):
  """Holds <root>/.study.lock: one TPE search per root at a time (a second
  one would take the first one's running trial for a crashed one)."""
  import fcntl  # pylint: disable=g-import-not-at-top
  with (root / ".study.lock").open("w") as lock:
    try:
      fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      raise UserError(f"Another TPE search is running on {root}: a study "
                      "runs one trial at a time.") from None
    yield


def _trial_seed(seed: int, number: int) -> int:
  # The sampler is seeded afresh for each trial from (seed, trial number),
  # so a resumed search draws what an uninterrupted one would have, rather
  # than replaying its first (random start-up) trials.
  return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


def run_tpe(root: pathlib.Path, space: Space, num_trials: int, seed: int,
            direction: str,
            evaluate: Callable[[Overrides], float | None],
            log: Callable[[str], None] | None = None) -> list[Overrides]:
  """Runs TPE in <root>/study.db until it holds `num_trials` trials.

  `evaluate(overrides)` runs one trial and returns its objective, or None
  if the trial failed (told FAIL; the search goes on). A trial asked but
  never told (the search stopped mid-trial) is evaluated again first: its
  workdir resumes from its checkpoint, or is read back if done. Returns
  every trial's overrides, by trial number.
  """
  if not base_config.is_int(num_trials) or num_trials < 1:
    raise UserError(f"--trials={num_trials!r} must be an integer >= 1.")
  if not base_config.is_int(seed) or seed < 0:
    raise UserError(f"--seed={seed!r} must be an integer >= 0.")
  log = log or (lambda line: print(line, flush=True))
  optuna = _optuna()
  fail = optuna.trial.TrialState.FAIL
  root.mkdir(parents=True, exist_ok=True)
  distributions = {k: r.distribution(optuna) for k, r in space.items()}

  def finish(study, number: int, overrides: Overrides):
    value = evaluate(overrides)
    if value is None or not math.isfinite(value):
      study.tell(number, state=fail)
      log(f"[search] trial {number}: failed")
      return
    study.tell(number, value)
    best = study.best_trial
    log(f"[search] trial {number}: {value:.6g} (best {best.value:.6g}, "
        f"trial {best.number}); {number + 1}/{num_trials}")

  with _exclusive(root):
    study = _open_study(optuna, root, direction)
    running = optuna.trial.TrialState.RUNNING
    for t in study.get_trials(deepcopy=False, states=(running,)):
      if set(t.params) != set(space):  # stopped inside ask
        study.tell(t.number, state=fail)
        continue
      log(f"[search] trial {t.number} was not finished: running it again")
      finish(study, t.number, _overrides(space, t.params))
    done = len(study.get_trials(deepcopy=False))
    if done >= num_trials:
      log(f"[search] the study has {done} trials (--trials={num_trials}): "
          "nothing to run")
    while len(study.get_trials(deepcopy=False)) < num_trials:
      number = len(study.get_trials(deepcopy=False))
      study.sampler = optuna.samplers.TPESampler(
          seed=_trial_seed(seed, number))
      trial = study.ask(distributions)
      finish(study, trial.number, _overrides(space, trial.params))
  return [t for t, _ in study_trials(root, space)]


def _overrides(space: Space, params: Mapping[str, Any]) -> Overrides:
  """Optuna's params -> the values a trial runs (rounded, as random's)."""
  return {k: r.from_optuna(params[k]) for k, r in space.items()}


def study_trials(root: pathlib.Path, space: Space
                 ) -> list[tuple[Overrides, str]]:
  """(overrides, state: "COMPLETE", "FAIL", "RUNNING", ...) of each trial
  of <root>/study.db, by trial number; trials without all the space's
  params (stopped inside ask) are left out."""
  path = root / STUDY_FILE
  if not path.exists():
    raise UserError(f"No TPE study at {path}: run the search first.")
  study = _open_study(_optuna(), root, None)
  return [(_overrides(space, t.params), t.state.name)
          for t in study.get_trials(deepcopy=False)
          if set(t.params) == set(space)]
