"""Sequence layers: a cell run over time with `nn.scan`, and a deep stack.

Shape legend: B batch, T time, D input features, H hidden size.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from rnnlab import hashrng
from rnnlab.errors import UserError
from rnnlab.models import cells as cells_lib
from rnnlab.models import fused
from rnnlab.registry import lookup

Array = jax.Array

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16,
          "float16": jnp.float16}

# Keys of config.model that individual cells take (see cells.*.config_keys).
CELL_OPTION_KEYS = tuple(sorted({k for c in cells_lib.CELLS.values()
                                 for k in c.config_keys}))


class Dropout(nn.Module):
  """Inverted dropout with hash-based masks (`hashrng.keep_mask`): on CPU
  ~30x cheaper than nn.Dropout's threefry masks, most of a dropout layer's
  cost in a training step."""

  rate: float
  deterministic: bool | None = None

  @nn.compact
  def __call__(self, x: Array, deterministic: bool | None = None) -> Array:
    deterministic = nn.merge_param("deterministic", self.deterministic,
                                   deterministic)
    if deterministic or self.rate == 0.0:
      return x
    if self.rate >= 1.0:
      return jnp.zeros_like(x)
    keep = hashrng.keep_mask(self.make_rng("dropout"), x.shape, self.rate)
    return jnp.where(keep, x / (1.0 - self.rate), 0).astype(x.dtype)


def _step(cell, carry, x):
  return cell(carry, x)


def _recurrence(cell, carry, xp):
  return cell.recurrence(carry, xp)


IMPLEMENTATIONS = ("auto", "scan", "fused", "cudnn")
# On the CPU "auto" picks "fused" from this hidden size up. Measured on the
# 2-core CPU (docs/benchmarks.md): at hidden 256 the per-step scan is faster
# (its small matmuls stay in cache), from 512 up the fused kernel wins
# (weight gradients as one matmul instead of T read-modify-writes of dW_hh).
# On a GPU "fused" won at every size measured (1.5-1.7x "scan" on an H100).
FUSED_FROM_HIDDEN_SIZE = 512


def resolve_implementation(implementation: str, hidden_size: int) -> str:
  lookup({i: i for i in IMPLEMENTATIONS}, implementation,
         "recurrent implementation")
  if implementation == "auto":
    if jax.default_backend() == "gpu":
      return "fused"
    return "fused" if hidden_size >= FUSED_FROM_HIDDEN_SIZE else "scan"
  return implementation


def scan_cell(cell: cells_lib.RecurrentCell, carry: Any, xs: Array, *,
              hoist_input_projection: bool = True, unroll: int = 1,
              reverse: bool = False, implementation: str = "scan"):
  """Runs a bound `cell` over xs [B, T, D] -> (carry, ys [B, T, H]).

  implementation="scan": `nn.scan` over the cell, differentiated by XLA.
    hoist_input_projection=True computes the input term of every gate for
    all time steps as one [B*T, D] x [D, G*H] matmul before the loop, so
    only the recurrent matmul stays inside it; False calls the whole cell
    per step.
  implementation="fused": the custom-VJP kernel of `fused.py` (always
    hoisted; weight gradients as single matmuls after the loop). Cells that
    do not support it (reset-before GRU) fall back to "scan".
  implementation="auto": on a GPU "fused"; on the CPU "fused" from
    FUSED_FROM_HIDDEN_SIZE up, else "scan".
  implementation="cudnn": LSTM only, on a CUDA GPU: cuDNN's kernel through
    `jax.experimental.rnn` (see `cudnn_lstm`).
  All give the same parameters and (to rounding) the same outputs.
  """
  implementation = resolve_implementation(implementation, cell.hidden_size)
  if implementation == "cudnn":
    return _cudnn_cell(cell, carry, xs, reverse=reverse)
  if implementation == "fused" and cell.supports_fused():
    return _fused_cell(cell, carry, xs, unroll=unroll, reverse=reverse)
  if hoist_input_projection:
    body, inputs = _recurrence, cell.project_inputs(xs)
  else:
    body, inputs = _step, xs
  scan = nn.scan(
      body, variable_broadcast="params", split_rngs={"params": False},
      in_axes=1, out_axes=1, unroll=unroll, reverse=reverse)
  return scan(cell, carry, inputs)


def _fused_cell(cell, carry, xs, *, unroll, reverse):
  if cell.is_initializing():
    cell(carry, xs[:, 0])  # creates the parameters
  params = cell.variables["params"]
  dtype = cell.dtype
  weights = {"w_x": params["input_proj"]["kernel"].astype(dtype),
             "b": params["input_proj"]["bias"].astype(dtype),
             "w_h": params["hidden_proj"]["kernel"].astype(dtype),
             "extras": cell.gate_extras()}
  xs_tm = jnp.swapaxes(xs, 0, 1).astype(dtype)  # [T, B, D]
  if reverse:
    xs_tm = xs_tm[::-1]
  carry, ys = fused.fused_scan(cell.gate_function(), type(cell).hidden_of,
                               unroll, weights, carry, xs_tm)
  if reverse:
    ys = ys[::-1]
  return carry, jnp.swapaxes(ys, 0, 1)


# None: jax.experimental.rnn.lstm (cuDNN). Tests set a CPU reference with the
# same signature to check the weight packing without a GPU.
CUDNN_LSTM_FN = None


def cudnn_lstm(weights: dict[str, Array], carry, xs: Array, *,
               lstm_fn=None):
  """One LSTM layer through cuDNN: xs [B, T, D] -> ((c, h), ys [B, T, H]).

  weights: our layout, w_x [D, 4H], b [4H], w_h [H, 4H], gates i, f, g, o
  (cuDNN's order too). cuDNN wants one flat vector holding W_ih [4H, D],
  W_hh [4H, H], b_ih, b_hh; we pack it on every call, so the parameters keep
  the layout of every other implementation and checkpoints move freely
  between them (the transposes are negligible next to the layer).
  Computes in float32: jax.experimental.rnn has no bf16 LSTM.
  lstm_fn: `jax.experimental.rnn.lstm` by default; tests pass the unpacked
  reference to check the packing on CPU.
  """
  from jax.experimental import rnn as jax_rnn  # only this path needs it
  lstm_fn = lstm_fn or jax_rnn.lstm
  f32 = lambda a: a.astype(jnp.float32)
  w_x, w_h, b = f32(weights["w_x"]), f32(weights["w_h"]), f32(weights["b"])
  packed = jnp.concatenate([w_x.T.ravel(), w_h.T.ravel(), b,
                            jnp.zeros_like(b)])
  c0, h0 = carry
  batch, steps = xs.shape[:2]
  ys, h_n, c_n = lstm_fn(
      f32(xs), h0[None], c0[None], packed,
      jnp.full((batch,), steps, jnp.int32), input_size=xs.shape[-1],
      hidden_size=w_h.shape[0], num_layers=1, dropout=0.0,
      bidirectional=False)
  return (c_n[0], h_n[0]), ys


def _cudnn_cell(cell, carry, xs, *, reverse):
  if not isinstance(cell, cells_lib.LSTMCell):
    raise UserError(
        f"implementation='cudnn' runs only the LSTM cell (cuDNN through "
        f"jax.experimental.rnn); got a {type(cell).__name__}. Use one of "
        f"'auto', 'scan', 'fused' for it.")
  if CUDNN_LSTM_FN is None and jax.default_backend() != "gpu":
    raise UserError(
        f"implementation='cudnn' needs a CUDA GPU, but JAX's backend is "
        f"{jax.default_backend()!r}. Use one of 'auto', 'scan', 'fused'.")
  if cell.is_initializing():
    cell(carry, xs[:, 0])  # creates the parameters
  params = cell.variables["params"]
  weights = {"w_x": params["input_proj"]["kernel"],
             "b": params["input_proj"]["bias"],
             "w_h": params["hidden_proj"]["kernel"]}
  if reverse:
    xs = xs[:, ::-1]
  carry, ys = cudnn_lstm(weights, carry, xs, lstm_fn=CUDNN_LSTM_FN)
  return carry, (ys[:, ::-1] if reverse else ys)


class Recurrent(nn.Module):
  """Runs `cell` over the time axis: xs [B, T, D] -> (carry, ys [B, T, H]).

  See `scan_cell` for `hoist_input_projection`.
  """

  cell: cells_lib.RecurrentCell
  hoist_input_projection: bool = True
  unroll: int = 1
  reverse: bool = False
  implementation: str = "scan"

  @nn.compact
  def __call__(self, xs: Array, initial_carry: Any = None):
    if initial_carry is None:
      initial_carry = self.cell.initialize_carry(xs.shape[:1])
    return scan_cell(self.cell, initial_carry, xs,
                     hoist_input_projection=self.hoist_input_projection,
                     unroll=self.unroll, reverse=self.reverse,
                     implementation=self.implementation)


SCHEDULES = ("layer_by_layer", "wavefront")


class RecurrentStack(nn.Module):
  """`num_layers` recurrent layers with dropout between them.

  xs [B, T, D] -> (carries, ys [B, T, H]); carries is a tuple with one cell
  carry per layer (pass it back in to continue a sequence).
  `cell_options` is a mapping holding the cell-specific keys (e.g. the model
  config); see `cells.create_cell`.

  schedule="layer_by_layer" runs each layer over the whole sequence in turn.
  schedule="wavefront" runs all layers in one loop, layer l at time t - l in
  iteration t: the layers' steps in an iteration are independent, so XLA can
  run them on different cores. Both give the same result. The wavefront
  applies to the "scan" implementation; "fused" and "cudnn" layers run one
  by one (a fused wavefront kernel was slower: docs/benchmarks.md).
  """

  cell: str
  hidden_size: int
  num_layers: int = 1
  dropout_rate: float = 0.0
  cell_options: Any = None
  hoist_input_projection: bool = True
  unroll: int = 1
  schedule: str = "layer_by_layer"
  implementation: str = "scan"
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def make_cell(self, **kwargs) -> cells_lib.RecurrentCell:
    return cells_lib.create_cell(
        self.cell, self.hidden_size, self.cell_options, dtype=self.dtype,
        param_dtype=self.param_dtype, **kwargs)

  def setup(self):
    if self.num_layers <= 0:
      raise UserError(f"num_layers must be positive, got {self.num_layers}.")
    lookup({s: s for s in SCHEDULES}, self.schedule, "layer schedule")
    self.layers = [self.make_cell() for _ in range(self.num_layers)]
    self.dropout = Dropout(self.dropout_rate)

  def initialize_carry(self, batch_size: int) -> tuple[Any, ...]:
    """Zero float32 carries for every layer."""
    carry = self.make_cell(parent=None).initialize_carry((batch_size,))
    return tuple(carry for _ in range(self.num_layers))

  def __call__(self, xs: Array, carries: Sequence[Any] | None = None, *,
               train: bool = False):
    if carries is None:
      carries = self.initialize_carry(xs.shape[0])
    implementation = resolve_implementation(self.implementation,
                                            self.hidden_size)
    if (self.schedule == "wavefront" and self.num_layers > 1 and
        implementation == "scan"):
      return self._wavefront(xs, tuple(carries), train)
    new_carries = []
    for i, cell in enumerate(self.layers):
      if i > 0:
        xs = self.dropout(xs, deterministic=not train)
      carry, xs = scan_cell(
          cell, carries[i], xs,
          hoist_input_projection=self.hoist_input_projection,
          unroll=self.unroll, implementation=self.implementation)
      new_carries.append(carry)
    return tuple(new_carries), xs

  def step(self, x: Array, carries: Sequence[Any]):
    """One time step of every layer: x [B, D] -> (carries, y [B, H]).

    For generation, where a scan of length 1 per layer (and the wavefront's
    extra iteration) would cost more than the step itself. Eval mode.
    """
    new_carries = []
    for cell, carry in zip(self.layers, carries):
      carry, x = cell(carry, x)
      new_carries.append(carry)
    return tuple(new_carries), x

  def _wavefront_keep_masks(self, steps, batch, train):
    """Dropout keep masks [L-1, T, B, H] of layers 1.., drawn for the whole
    sequence up front (time-major); None when dropout is off."""
    if not train or self.dropout_rate == 0:
      return None
    return jax.vmap(lambda r: hashrng.keep_mask(
        r, (steps, batch, self.hidden_size), self.dropout_rate))(
            jax.random.split(self.make_rng("dropout"), self.num_layers - 1))

  def _wavefront(self, xs, carries, train):
    """All layers in one scan; layer l handles time t = i - l in iteration i.

    Iteration i feeds layer l (l > 0) with layer l-1's output from
    iteration i-1. The first and last L-1 iterations are partly outside the
    sequence; there a layer keeps its carry unchanged.
    """
    num_layers, (batch, steps) = self.num_layers, xs.shape[:2]
    lag = num_layers - 1
    xs_tm = jnp.swapaxes(xs, 0, 1)  # [T, B, D], time-major for the scan
    inputs = {"x": jnp.pad(xs_tm, ((0, lag), (0, 0), (0, 0))),
              "t": jnp.arange(steps + lag)}
    keep = self._wavefront_keep_masks(steps, batch, train)
    if keep is not None:
      # Shifted so that iteration i sees layer l's mask for time i - l.
      inputs["keep"] = tuple(
          jnp.pad(keep[l - 1], ((l, lag - l), (0, 0), (0, 0)))
          for l in range(1, num_layers))
    zeros = jnp.zeros((batch, self.hidden_size), xs.dtype)
    init = (carries, (zeros,) * lag)

    def body(stack, state, inp):
      carries, feeds = state
      new_carries, outputs = [], []
      for l, cell in enumerate(stack.layers):
        x = inp["x"] if l == 0 else feeds[l - 1]
        if l > 0 and "keep" in inp:
          x = jnp.where(inp["keep"][l - 1], x / (1 - self.dropout_rate), 0)
        carry, y = cell(carries[l], x)
        t = inp["t"] - l
        inside = (t >= 0) & (t < steps)
        carry = jax.tree.map(lambda new, old: jnp.where(inside, new, old),
                             carry, carries[l])
        new_carries.append(carry)
        outputs.append(y)
      return (tuple(new_carries), tuple(outputs[:-1])), outputs[-1]

    scan = nn.scan(body, variable_broadcast="params",
                   split_rngs={"params": False}, unroll=self.unroll)
    (carries, _), ys = scan(self, init, inputs)
    return carries, jnp.swapaxes(ys[lag:], 0, 1)


def stack_kwargs_from_config(c) -> dict[str, Any]:
  """`config.model` -> RecurrentStack fields; validates names and sizes."""
  options = flax.core.FrozenDict({k: c[k] for k in CELL_OPTION_KEYS})
  cells_lib.create_cell(c.cell, c.hidden_size, options)  # fail fast on names
  return dict(
      cell=c.cell, hidden_size=c.hidden_size, num_layers=c.num_layers,
      dropout_rate=c.dropout_rate, cell_options=options,
      hoist_input_projection=c.hoist_input_projection, unroll=c.unroll,
      schedule=c.layer_schedule, implementation=c.implementation, dtype=lookup(DTYPES, c.dtype, "dtype"),
      param_dtype=lookup(DTYPES, c.param_dtype, "param_dtype"))
