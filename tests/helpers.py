"""Helpers shared by all tests: float32 tolerances that hold on any CPU.

The suite runs on CPUs with different instruction sets (AVX-512, or only
AVX2+FMA). XLA and the native kernels vectorise and order sums differently
on each, so float32 results of two *different* programs (a kernel and a
reference, a scan and a step-by-step loop, jax and numpy) can differ by a
few ulps from one machine to the next. The rule:

* Different programs computing the same float32 value: compare with
  `assert_float32_close` (rtol 1e-5 plus an atol near zero, scaled to the
  magnitudes), never with rtol below ~1e-5. A longer float32 chain (many
  recurrent steps, Adam steps, sums of thousands of terms, float64
  references) may need more; pass it and say why in a comment.
* Exact equality only where the *same* program runs twice (a bitwise
  resume, the same seed, the same function called again), where values are
  exact by construction (copies, masked zeros), or for integers, tokens and
  booleans.
"""
from __future__ import annotations

import jax
import numpy as np

# About 80 float32 ulps near 1: room for a different summation order or
# instruction set, still far below any real bug's error.
FLOAT32_RTOL = 1e-5
# For expected values at or near zero, where rtol allows nothing; for O(1)
# values. Scale it to the magnitudes involved (see `float32_atol`).
FLOAT32_ATOL = 1e-6


def float32_atol(*values, rtol: float = FLOAT32_RTOL,
                 floor: float = FLOAT32_ATOL) -> float:
  """An absolute tolerance for float32 values of these magnitudes:
  rtol x the largest |value| in `values` (arrays or pytrees), at least
  `floor`. For checks that take only an atol, or for elements near zero
  among large ones (a sum whose terms cancel)."""
  largest = max((float(np.max(np.abs(np.asarray(leaf, np.float64))))
                 for leaf in jax.tree.leaves(values) if np.size(leaf)),
                default=0.0)
  return max(floor, rtol * largest)


def assert_float32_close(actual, expected, *, rtol: float = FLOAT32_RTOL,
                         atol: float = FLOAT32_ATOL, err_msg: str = ""):
  """np.testing.assert_allclose for float32 results of different programs,
  on arrays or on matching pytrees (leaf by leaf, the path in the message).
  `expected` may be a scalar or a list where `actual` is one array."""

  def check(path, a, e):
    where = jax.tree_util.keystr(path)
    msg = " ".join(m for m in (err_msg, where) if m)
    np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=rtol,
                               atol=atol, err_msg=msg)

  jax.tree_util.tree_map_with_path(check, actual, expected)
