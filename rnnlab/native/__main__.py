"""The native kernels' build cache and "auto"'s cached choices.

  python -m rnnlab.native [show]    the CPU, the variants it runs, the cached
                                    libraries and choices
  python -m rnnlab.native clear [--libraries]
                                    forgets the choices (and the libraries):
                                    the next run times (and builds) again
  python -m rnnlab.native build [CONFIG ...] [--config=CONFIG
                                [--config.key=value ...]]
                                    compiles both kernels for this machine,
                                    then times "auto" for each config's
                                    training step and prints the choice
                                    (CONFIG: path.py or path.py:arg; --config
                                    takes overrides as rnnlab.main does)

`launch.sh` runs `build` before training, so that no compile happens inside
a job's training steps. Without a compiler, `build` says so and times the
XLA implementations only (exit 0: the kernels are optional).
"""
from __future__ import annotations

import datetime

from absl import flags
from ml_collections import config_flags

from rnnlab import base_config
from rnnlab import cli
from rnnlab import train
from rnnlab.errors import UserError
from rnnlab.native import autotune
from rnnlab.native import build as native_build
from rnnlab.native import recurrence
from rnnlab.native import sampler

COMMANDS = ("show", "clear", "build")


def _define_flags():
  config_flags.DEFINE_config_file(
      "config", None, "build: a config whose training step 'auto' should "
      "time, with --config.key=value overrides as in rnnlab.main.",
      lock_config=True)
  flags.DEFINE_bool("libraries", False, "clear: also delete the built "
                    "libraries.")


def _machine() -> str:
  reason = native_build.disabled()
  isa = "off" if reason else native_build.default_isa()
  return (f"CPU: {native_build.cpu_model()}, {native_build.cores()} cores "
          f"usable; variants it runs: "
          f"{', '.join(native_build.supported_isas())}; built: {isa}"
          f"{' (' + reason + ')' if reason else ''}\n"
          f"cache: {native_build.cache_dir()}")


def show():
  print(_machine())
  libraries = sorted(native_build.cache_dir().glob("*.so"))
  print(f"libraries ({len(libraries)}):")
  for path in libraries:
    stat = path.stat()
    when = datetime.datetime.fromtimestamp(stat.st_mtime)
    print(f"  {path.name}  {stat.st_size // 1024} KiB  "
          f"{when:%Y-%m-%d %H:%M}")
  choices = autotune.list_choices()
  print(f"auto's choices ({len(choices)}):")
  for record in choices:
    if "error" in record:
      print(f"  {record['file']}: {record['error']}")
      continue
    timed = autotune.Choice(record["choice"], "timed", record["seconds"])
    print(f"  {record['kind']} {_describe(record['fields'])} -> "
          f"{timed.summary()}  [{record.get('created', '')}]")


def _describe(fields) -> str:
  """The fields that tell trials apart, in a line."""
  model = fields.get("model", fields)
  keys = ("task", "cell", "hidden_size", "hidden", "num_layers", "batch",
          "dtype")
  parts = [f"{k}={fields[k]}" for k in keys if k in fields and
           not isinstance(fields[k], dict)]
  parts += [f"{k}={model[k]}" for k in keys if k in model and model is not
            fields]
  batch = fields.get("batch")
  if isinstance(batch, dict) and batch:  # the training batch's arrays
    shape = next(iter(batch.values()))[0]
    parts.append("batch=" + "x".join(map(str, shape)))
  return " ".join(parts)


def clear(libraries: bool):
  count = autotune.clear()
  print(f"cleared {count} cached choices")
  if libraries:
    paths = list(native_build.cache_dir().glob("*.so"))
    for path in paths:
      path.unlink(missing_ok=True)
    print(f"deleted {len(paths)} libraries")


def build_all(configs):
  """Compiles the kernels, then times "auto" for each config (a list of
  (name, ConfigDict))."""
  print(_machine())
  reason = native_build.disabled()
  if not reason:
    isa = native_build.default_isa()
    try:
      recurrence.register(isa)
      sampler.library(isa)
    except native_build.NativeUnavailable as e:
      reason = str(e)
  if reason:
    print(f"native kernels unavailable ({reason}); training runs the XLA "
          f"implementations")
  else:
    built = sorted(native_build.cache_dir().glob(f"*-{isa}-*.so"))
    print(f"built: {', '.join(p.name for p in built)}")
  if configs:
    for name, config in configs:
      choice = train.choose_for_config(config)
      print(f"{name}: implementation=auto runs {choice.summary()}")


def main(argv):
  command = argv[1] if len(argv) > 1 else "show"
  specs = argv[2:]
  if command not in COMMANDS or (specs and command != "build"):
    raise UserError(f"Unknown command {' '.join(argv[1:])!r}. Valid choices: "
                    f"{', '.join(COMMANDS)} (build takes config files).")
  f = flags.FLAGS
  if command == "show":
    show()
  elif command == "clear":
    clear(f.libraries)
  else:
    configs = [(spec, base_config.load_file(spec)) for spec in specs]
    if f.config is not None:
      configs.append((config_flags.get_config_filename(flags.FLAGS["config"]),
                      f.config))
    build_all(configs)


if __name__ == "__main__":
  cli.run_command(_define_flags, main)
