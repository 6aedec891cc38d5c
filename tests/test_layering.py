"""The package's layering: rnnlab's imports point one way.

The import graph is read from each module's source (its AST), counting
imports at any depth: an import inside a function is still a dependency,
and hiding one there is how a cycle used to go unnoticed. Edges are between
rnnlab modules: `from rnnlab import x` and `from rnnlab.pkg import x` count
as importing the module x when x is one, relative imports too; a package's
own `__init__` is counted only when it is named.

Layers, bottom up (docs in README.md, "Layout"):
  errors, registry, hashrng, distributed, metrics, checkpoint, jax_guard,
  throughput (timing and the PyTorch peer)
  data/, models/, native/ kernels, optim, decode
  base_config (the schema: no registry)     sharding
  rundir (run files)  ->  sampling (generation)  ->  tasks/
  config_check, transfer, recipes (configs/ only), search (its spaces)
  implementation_choice  ->  train (the trainer)
  cli and the commands: main, sample, predict, classify, translate,
  diagnose, sweep, gpu_check, native/__main__

And the tests' own: test modules import shared code from helper modules
(tests/helpers.py, tests/models/helpers.py), never conftest.py (fixtures
only) or another test module, also in the scripts they run.
"""
from __future__ import annotations

import ast
import pathlib
import textwrap

from tests.helpers import ROOT

PACKAGE = ROOT / "rnnlab"
# Run as `python -m ...`; no rnnlab module may import one.
COMMANDS = {"rnnlab.main", "rnnlab.sample", "rnnlab.predict",
            "rnnlab.classify", "rnnlab.translate", "rnnlab.diagnose",
            "rnnlab.sweep", "rnnlab.gpu_check", "rnnlab.native.__main__"}
TRAINER = "rnnlab.train"
# Imported only by commands: the trainer, the commands' shared flag and
# exit-code handling, and the configs' recipes (configs/*.py import it).
COMMAND_ONLY = {TRAINER, "rnnlab.cli", "rnnlab.recipes"}
# What the config schema may import: it sits below every registry.
BASE_CONFIG_IMPORTS = {"rnnlab.errors", "rnnlab.registry"}


def modules(package: pathlib.Path) -> dict[str, tuple[pathlib.Path, bool]]:
  """{dotted name: (path, is_package)} of every module under `package`."""
  found = {}
  for path in sorted(package.rglob("*.py")):
    parts = path.relative_to(package.parent).with_suffix("").parts
    is_package = parts[-1] == "__init__"
    found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
  return found


def import_graph(package: pathlib.Path = PACKAGE, *,
                 scripts: bool = False) -> dict[str, set[str]]:
  """{module: the modules of `package` it imports anywhere in its source}.

  scripts: also the imports of each string constant that parses as Python
  (a script or config file that a test runs in a subprocess), including a
  script's import of the very module that holds it.
  """
  mods = modules(package)

  def resolve(name: str) -> str | None:
    while name and name not in mods:  # e.g. rnnlab.errors.UserError
      name = name.rpartition(".")[0]
    return name or None

  def imports(tree: ast.AST, name: str, is_package: bool) -> set[str]:
    imported = set()
    for node in ast.walk(tree):
      if isinstance(node, ast.Import):
        imported.update(resolve(a.name) for a in node.names)
      elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:  # relative: from the package holding this module
          package_name = name if is_package else name.rpartition(".")[0]
          anchor = package_name.split(".")
          anchor = anchor[:len(anchor) - (node.level - 1)]
          base = ".".join(anchor + ([base] if base else []))
        for alias in node.names:
          full = f"{base}.{alias.name}"
          imported.add(full if full in mods else resolve(base))
    return {m for m in imported if m}

  graph = {}
  for name, (path, is_package) in mods.items():
    tree = ast.parse(path.read_text(), str(path))
    graph[name] = imports(tree, name, is_package) - {name}
    if scripts:
      for script in _scripts(tree):
        graph[name] |= imports(script, name, is_package)
  return graph


def _scripts(tree: ast.AST):
  """The string constants in `tree` that parse as Python with an import,
  parsed (an f-string's replacement fields read as a name)."""
  for node in ast.walk(tree):
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
      text = node.value
    elif isinstance(node, ast.JoinedStr):
      text = "".join(v.value if isinstance(v, ast.Constant) else "_"
                     for v in node.values)
    else:
      continue
    if "import" not in text:
      continue
    try:
      script = ast.parse(textwrap.dedent(text))
    except SyntaxError:
      continue
    if any(isinstance(n, (ast.Import, ast.ImportFrom))
           for n in ast.walk(script)):
      yield script


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """The strongly connected components with more than one module
  (Tarjan), each sorted."""
  index, low, stack, on_stack, found = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in sorted(graph[v]):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        found.append(sorted(component))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return found


def cycle_path(graph: dict[str, set[str]], component: list[str]) -> list[str]:
  """One shortest cycle through the component's first module, e.g.
  [a, b, c, a] (breadth-first inside the component)."""
  start, members = component[0], set(component)
  parents, frontier = {start: None}, [start]
  while frontier:
    reached = []
    for v in frontier:
      for w in sorted(graph[v] & members):
        if w == start:  # v -> start closes it: walk back from v
          path = [v]
          while parents[path[-1]] is not None:
            path.append(parents[path[-1]])
          return path[::-1] + [start]
        if w not in parents:
          parents[w] = v
          reached.append(w)
    frontier = reached
  return component


def test_the_graph_sees_every_kind_of_import():
  graph = import_graph()
  assert "rnnlab.models.cells" in graph["rnnlab.models.layers"]  # from-import
  assert "rnnlab.errors" in graph["rnnlab.registry"]  # of a name
  assert "rnnlab.tasks.char_lm" in graph["rnnlab.tasks"]  # package __init__
  assert "rnnlab.train" in graph["rnnlab.main"]


def test_no_import_cycle():
  graph = import_graph()
  found = cycles(graph)
  assert not found, "Import cycles among rnnlab modules:\n" + "\n".join(
      f"  {len(c)} modules: {', '.join(c)}\n    e.g. "
      f"{' -> '.join(cycle_path(graph, c))}" for c in found)


def test_library_modules_never_import_the_trainer_or_a_command():
  graph = import_graph()
  wrong = sorted(f"{m} imports {dep}" for m, deps in graph.items()
                 if m not in COMMANDS for dep in deps
                 if dep in COMMANDS | COMMAND_ONLY)
  assert not wrong, ("Only commands may import the trainer, rnnlab.cli, "
                     "rnnlab.recipes or another command:\n  " +
                     "\n  ".join(wrong))
  assert COMMANDS | COMMAND_ONLY <= set(graph)  # the names are current


def test_base_config_imports_no_registry():
  extra = import_graph()["rnnlab.base_config"] - BASE_CONFIG_IMPORTS
  assert not extra, (f"rnnlab.base_config imports {sorted(extra)}: the "
                     "schema sits below the registries (registered names are "
                     "checked in rnnlab.config_check).")


# --- the tests' own layering --------------------------------------------------

def _is_test_module(name: str) -> bool:
  last = name.rpartition(".")[2]
  return last == "conftest" or last.startswith("test_")


def test_imports_between_test_files_are_seen(tmp_path):
  """Each kind of import is seen, in a test module's source or in a script
  it runs. (The package is "suite", not "tests", so that this file's own
  scripts import nothing of the real tests.)"""
  suite = tmp_path / "suite"
  (suite / "models").mkdir(parents=True)
  for name in ("__init__", "conftest", "helpers", "test_a", "test_b",
               "test_d", "models/__init__", "models/helpers", "models/test_c"):
    (suite / f"{name}.py").write_text("")
  (suite / "test_a.py").write_text(textwrap.dedent('''
      import suite.test_b
      from suite import helpers, conftest
      from .models import test_c

      def f():
        from suite.test_d import make

      SCRIPT = """
          from suite.test_a import make
          """
      CONFIG = f"""
      from suite.models.helpers import randomize
      params = randomize({PARAMS!r})
      """
      '''))
  in_source = {"suite.test_b", "suite.helpers", "suite.conftest",
               "suite.models.test_c", "suite.test_d"}
  assert import_graph(suite)["suite.test_a"] == in_source
  assert import_graph(suite, scripts=True)["suite.test_a"] == in_source | {
      "suite.test_a", "suite.models.helpers"}
  assert not any(map(_is_test_module,
                     ["suite.helpers", "suite.models.helpers"]))


def test_test_modules_import_helpers_not_tests():
  """Shared test code lives in helper modules (tests/helpers.py,
  tests/models/helpers.py); conftest.py holds fixtures. A test module that
  imports conftest or another test module (or runs a script that does)
  makes one test's file the helper of another: moving or renaming a test
  breaks tests elsewhere, and pytest may collect its tests twice."""
  graph = import_graph(ROOT / "tests", scripts=True)
  wrong = sorted(f"{m} imports {dep}" for m, deps in graph.items()
                 for dep in deps if _is_test_module(dep))
  assert not wrong, ("Test modules import helpers from tests/helpers.py or "
                     "tests/models/helpers.py, never conftest.py or another "
                     "test module:\n  " + "\n  ".join(wrong))
