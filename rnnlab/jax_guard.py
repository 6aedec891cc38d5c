"""A start-up warning for JAX releases with a known CPU regression.

pyproject.toml leaves jax/jaxlib open above (GPU and TPU users need the
releases their hardware and CUDA need); requirements/constraints.txt pins the
CPU install below the regression. A CPU install that skipped the constraints
gets one warning naming the issue and the fix instead of a silent slowdown.

Imports no rnnlab module: it sits at the bottom of the layering, beside
`errors`, so that every command's start-up (`cli.setup`) can call `check`.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import pkgutil
import re

from absl import logging

ISSUE = "jax#40101 (https://github.com/jax-ml/jax/issues/40101)"
# jaxlib releases with the regression: [first, fixed). None: no fixed
# release yet; set it when one ships and the tests' pins move.
AFFECTED_JAXLIB = ((0, 11, 1), None)
FIX = ("pip install -c requirements/constraints.txt -e . "
       "(or pip install 'jax<0.11' 'jaxlib<0.11')")

_warned = False


def jaxlib_version() -> tuple[int, ...]:
  """The installed jaxlib's release numbers, e.g. (0, 10, 2); read from the
  package metadata, so that nothing is imported or started."""
  try:
    text = importlib.metadata.version("jaxlib")
  except importlib.metadata.PackageNotFoundError:  # a source build
    import jaxlib.version  # pylint: disable=g-import-not-at-top
    text = jaxlib.version.__version__
  return tuple(int(x) for x in re.findall(r"\d+", text.split("+")[0])[:3])


def affected(version: tuple[int, ...]) -> bool:
  first, fixed = AFFECTED_JAXLIB
  return version >= first and (fixed is None or version < fixed)


def _accelerator_plugins() -> list[str]:
  """The PJRT plugins JAX would load (CUDA, ROCm, TPU), found without
  importing them."""
  names = [e.name for e in importlib.metadata.entry_points(group="jax_plugins")]
  try:
    import jax_plugins  # pylint: disable=g-import-not-at-top
    names += [m.name for m in pkgutil.iter_modules(jax_plugins.__path__)]
  except ImportError:
    pass
  if importlib.util.find_spec("libtpu") is not None:
    names.append("libtpu")
  return names


def default_backend() -> str | None:
  """JAX's default backend ("cpu", "gpu", "tpu"), without starting one.

  A started backend cannot be told to join a multi-process run
  (jax.distributed.initialize must come first), and commands call this
  before they join. So: jax.default_backend() once backends are up; before
  that the first platform of JAX_PLATFORMS if set; else "cpu" when no
  accelerator plugin is installed; else None (unknown until JAX starts).
  """
  import jax  # pylint: disable=g-import-not-at-top
  if _backends_started():
    return jax.default_backend()
  first = _configured_platforms().split(",")[0].strip()
  if first:
    return "gpu" if first in ("cuda", "rocm") else first
  return None if _accelerator_plugins() else "cpu"


def _backends_started() -> bool:
  """Whether JAX has started its backends. A private API: a JAX without it
  counts as not started, which is safe (the prediction starts nothing)."""
  try:
    from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
    return xla_bridge.backends_are_initialized()
  except (ImportError, AttributeError):
    return False


def _configured_platforms() -> str:
  """JAX_PLATFORMS (or the jax_platforms option): "" if unset."""
  import jax  # pylint: disable=g-import-not-at-top
  return jax.config.jax_platforms or ""


def check() -> str | None:
  """Logs one warning per process if the default backend is CPU and the
  installed jaxlib has the regression; returns its text (None if silent)."""
  global _warned
  if _warned:
    return None
  version = jaxlib_version()
  if not affected(version) or default_backend() != "cpu":
    return None
  _warned = True
  message = (
      f"jaxlib {'.'.join(map(str, version))} on CPU has a known slowdown, "
      f"{ISSUE}: from jaxlib {'.'.join(map(str, AFFECTED_JAXLIB[0]))} an "
      "XLA:CPU scan with a per-step output under 256 bytes (small hidden "
      "sizes, e.g. forecasting models) runs in quadratic time. For CPU runs "
      f"install the pinned versions: {FIX}.")
  logging.warning(message)
  return message
