"""The package's layering: rnnlab's imports point one way.

The import graph is read from each module's source (its AST), counting
imports at any depth: an import inside a function is still a dependency,
and hiding one there is how a cycle used to go unnoticed. Edges are between
rnnlab modules: `from rnnlab import x` and `from rnnlab.pkg import x` count
as importing the module x when x is one, relative imports too; a package's
own `__init__` is counted only when it is named.

Layers, bottom up (docs in README.md, "Layout"):
  errors, registry, hashrng, distributed, metrics, checkpoint
  data/, models/, native/ kernels, optim, decode
  base_config (the schema: no registry)     sharding
  rundir (run files)  ->  sampling (generation)  ->  tasks/
  config_check, transfer, recipes (configs/ only)
  train (the trainer)
  cli and the commands: main, sample, predict, diagnose, sweep,
  native/__main__
"""
from __future__ import annotations

import ast
import pathlib

from tests.conftest import ROOT

PACKAGE = ROOT / "rnnlab"
# Run as `python -m ...`; no rnnlab module may import one.
COMMANDS = {"rnnlab.main", "rnnlab.sample", "rnnlab.predict",
            "rnnlab.diagnose", "rnnlab.sweep", "rnnlab.native.__main__"}
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


def import_graph(package: pathlib.Path = PACKAGE) -> dict[str, set[str]]:
  """{module: the rnnlab modules it imports anywhere in its source}."""
  mods = modules(package)

  def resolve(name: str) -> str | None:
    while name and name not in mods:  # e.g. rnnlab.errors.UserError
      name = name.rpartition(".")[0]
    return name or None

  graph = {}
  for name, (path, is_package) in mods.items():
    imported = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
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
    graph[name] = {m for m in imported if m and m != name}
  return graph


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
