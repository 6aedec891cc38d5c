"""Sequence layers: a cell run over time, and a deep stack.

A layer runs its cell with `nn.scan` here or with a kernel chosen by
`implementations.py` (fused, native, cuDNN); the modules are the same
whichever runs, and so are their parameters.

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
from rnnlab.models import implementations
from rnnlab.registry import lookup

Array = jax.Array

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16,
          "float16": jnp.float16}


def cell_option_keys() -> tuple[str, ...]:
  """Keys of config.model that the registered cells take (`config_keys`);
  read when a model is built, so cells registered by config.imports
  count."""
  return tuple(sorted({k for c in cells_lib.CELLS.values()
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


def length_mask(seq_lengths: Array, steps: int) -> Array:
  """[B] lengths -> [B, T] bool, True at valid (not padding) positions."""
  return jnp.arange(steps)[None, :] < seq_lengths[:, None]


def reverse_valid(xs: Array, seq_lengths: Array) -> Array:
  """Reverses the first seq_lengths[b] steps of each xs[b] ([B, T, ...]),
  leaving the right padding in place. Its own inverse."""
  steps = xs.shape[1]
  t = jnp.arange(steps)[None, :]
  index = jnp.where(t < seq_lengths[:, None], seq_lengths[:, None] - 1 - t, t)
  index = index.reshape(index.shape + (1,) * (xs.ndim - 2))
  return jnp.take_along_axis(xs, index, axis=1)


def scan_cell(cell: cells_lib.RecurrentCell, carry: Any, xs: Array, *,
              hoist_input_projection: bool = True, unroll: int = 1,
              reverse: bool = False, implementation: str = "scan",
              seq_lengths: Array | None = None,
              hidden_mask: Array | None = None,
              zoneout: Zoneout | None = None):
  """Runs a bound `cell` over xs [B, T, D] -> (carry, ys [B, T, H]).

  seq_lengths [B] (optional, int): right-padded sequences. Outputs at padded
    positions are zero, the returned carry is each sequence's carry after
    its last valid step, and reverse=True reverses only the valid part.
  hidden_mask [B, H]: variational recurrent dropout (see cells.py).
  zoneout: a `Zoneout`.
  With any of these three the layer runs the "scan" implementation.

  implementation: what runs the sequence ("scan", "fused", "native",
    "native_<isa>", "cudnn" or "auto"), and the rules for which one does,
    are `implementations.py`'s (`implementation_for`). "scan" is
    `nn.scan` over the cell, differentiated by XLA; with
    hoist_input_projection=True it computes the input term of every gate
    for all time steps as one [B*T, D] x [D, G*H] matmul before the loop,
    so only the recurrent matmul stays inside it; False calls the whole
    cell per step. The kernels always hoist it.
  """
  check_carry(cell, carry, xs)
  regularized = (seq_lengths is not None or hidden_mask is not None or
                 zoneout is not None)
  implementation = implementations.implementation_for(
      cell, implementation, regularized=regularized)
  if regularized:
    return _regularized_scan(
        cell, carry, xs, seq_lengths=seq_lengths, hidden_mask=hidden_mask,
        zoneout=zoneout, hoist=hoist_input_projection, unroll=unroll,
        reverse=reverse)
  if implementation != "scan":
    return implementations.run(cell, implementation, carry, xs,
                               unroll=unroll, reverse=reverse)
  if hoist_input_projection:
    body, inputs = _recurrence, cell.project_inputs(xs)
  else:
    body, inputs = _step, xs
  scan = nn.scan(
      body, variable_broadcast="params", split_rngs={"params": False},
      in_axes=1, out_axes=1, unroll=unroll, reverse=reverse)
  return scan(cell, carry, inputs)


@flax.struct.dataclass
class Zoneout:
  """Zoneout (Krueger et al. 2017): each unit of the carry keeps its
  previous value with probability `rate`. keep: carry-shaped [B, T, ...]
  bool masks, True = take the new value (training); None = evaluation,
  which uses the expectation rate * old + (1 - rate) * new."""
  rate: float = flax.struct.field(pytree_node=False)
  keep: Any = None


def _regularized_scan(cell, carry, xs, *, seq_lengths, hidden_mask, zoneout,
                      hoist, unroll, reverse):
  """The scan path with any of: right padding (seq_lengths [B]), a
  recurrent dropout mask (hidden_mask [B, H], shared over time), zoneout."""
  scan_reverse = reverse
  if reverse and seq_lengths is not None:
    # Backward over the valid part only; padding stays at the end.
    xs, scan_reverse = reverse_valid(xs, seq_lengths), False
  inputs = {"x": cell.project_inputs(xs) if hoist else xs}
  if seq_lengths is not None:
    inputs["valid"] = length_mask(seq_lengths, xs.shape[1])
  if zoneout is not None and zoneout.keep is not None:
    inputs["keep"] = zoneout.keep

  def body(cell, carry, inp, hidden_mask):
    if hoist:
      new_carry, y = cells_lib.apply_recurrence(cell, carry, inp["x"],
                                                hidden_mask)
    else:
      new_carry, y = cell(carry, inp["x"], hidden_mask)
    if zoneout is not None:
      if "keep" in inp:
        new_carry = jax.tree.map(jnp.where, inp["keep"], new_carry, carry)
      else:
        new_carry = jax.tree.map(
            lambda n, o: zoneout.rate * o + (1 - zoneout.rate) * n,
            new_carry, carry)
      y = type(cell).hidden_of(new_carry).astype(y.dtype)
    if "valid" in inp:
      valid = inp["valid"][:, None]
      new_carry = jax.tree.map(lambda n, o: jnp.where(valid, n, o),
                               new_carry, carry)
      y = jnp.where(valid, y, jnp.zeros_like(y))
    return new_carry, y

  scan = nn.scan(
      body, variable_broadcast="params", split_rngs={"params": False},
      in_axes=(1, nn.broadcast), out_axes=1, unroll=unroll,
      reverse=scan_reverse)
  carry, ys = scan(cell, carry, inputs, hidden_mask)
  if reverse and seq_lengths is not None:
    ys = reverse_valid(ys, seq_lengths)
  return carry, ys


def check_carry(cell, carry, xs: Array) -> None:
  """UserError unless `carry` has the structure and shapes of the cell's
  carry for xs [B, T, D] (a kernel reads it by those sizes)."""
  want = cell.initialize_carry(xs.shape[:1])
  if (jax.tree.structure(carry) != jax.tree.structure(want) or
      any(jnp.shape(c) != w.shape for c, w in zip(jax.tree.leaves(carry),
                                                  jax.tree.leaves(want)))):
    got = jax.tree.map(jnp.shape, carry)
    raise UserError(
        f"The initial carry has shape {got}, but a {type(cell).__name__} "
        f"of hidden size {cell.hidden_size} over a batch of {xs.shape[0]} "
        f"needs {jax.tree.map(jnp.shape, want)}.")


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
  def __call__(self, xs: Array, initial_carry: Any = None,
               seq_lengths: Array | None = None, *,
               hidden_mask: Array | None = None,
               zoneout: Zoneout | None = None):
    if initial_carry is None:
      initial_carry = self.cell.initialize_carry(xs.shape[:1])
    return scan_cell(self.cell, initial_carry, xs,
                     hoist_input_projection=self.hoist_input_projection,
                     unroll=self.unroll, reverse=self.reverse,
                     implementation=self.implementation,
                     seq_lengths=seq_lengths, hidden_mask=hidden_mask,
                     zoneout=zoneout)


MERGES = {
    "concat": lambda forward, backward: jnp.concatenate(
        [forward, backward], axis=-1),
    "sum": jnp.add,
}


class Bidirectional(nn.Module):
  """A forward and a backward layer of `cell` over the same inputs, merged.

  xs [B, T, D] -> ((carry_forward, carry_backward), ys), ys [B, T, 2H] for
  merge="concat" or [B, T, H] for "sum". `cell` is a template: each
  direction gets its own copy and parameters ("forward", "backward"). With
  seq_lengths the backward layer reads each sequence's valid part from its
  last step to its first, so padding never reaches the valid outputs. Each
  direction returns its own final carry (the backward one is its state at
  t = 0). Other fields as in `Recurrent`.
  """

  cell: cells_lib.RecurrentCell
  merge: str = "concat"
  hoist_input_projection: bool = True
  unroll: int = 1
  implementation: str = "scan"

  def setup(self):
    lookup(MERGES, self.merge, "bidirectional merge")
    kwargs = dict(hoist_input_projection=self.hoist_input_projection,
                  unroll=self.unroll, implementation=self.implementation)
    self.forward = Recurrent(self.cell.clone(parent=None), **kwargs)
    self.backward = Recurrent(self.cell.clone(parent=None), reverse=True,
                              **kwargs)

  def __call__(self, xs: Array, initial_carries: Any = None,
               seq_lengths: Array | None = None, *,
               hidden_masks=(None, None), zoneouts=(None, None)):
    """hidden_masks, zoneouts: one per direction, as in `Recurrent`."""
    forward0, backward0 = initial_carries or (None, None)
    carry_f, ys_f = self.forward(xs, forward0, seq_lengths,
                                 hidden_mask=hidden_masks[0],
                                 zoneout=zoneouts[0])
    carry_b, ys_b = self.backward(xs, backward0, seq_lengths,
                                  hidden_mask=hidden_masks[1],
                                  zoneout=zoneouts[1])
    return (carry_f, carry_b), MERGES[self.merge](ys_f, ys_b)


SCHEDULES = ("layer_by_layer", "wavefront")


class RecurrentStack(nn.Module):
  """`num_layers` recurrent layers with dropout between them.

  xs [B, T, D] -> (carries, ys [B, T, H_last]); carries is a tuple with one
  carry per layer (a (forward, backward) pair for bidirectional layers;
  pass it back in to continue a sequence). `cell_options` is a mapping
  holding the cell-specific keys (e.g. the model config); see
  `cells.create_cell`.

  Layer l, in order: standard dropout of its input (l > 0, `dropout_rate`,
  a fresh mask per step), variational input dropout (one mask per
  sequence), the recurrent layer (variational recurrent dropout and zoneout
  inside it), variational output dropout, layer norm, and a residual
  connection from its input when the widths match (l > 0). Dropout of all
  kinds and zoneout's sampling are on in training only.

  schedule="layer_by_layer" runs each layer over the whole sequence in turn.
  schedule="wavefront" runs all layers in one loop, layer l at time t - l in
  iteration t: the layers' steps in an iteration are independent, so XLA can
  run them on different cores. Both give the same result. The wavefront
  applies to the plain stack (equal sizes, none of the options above but
  `dropout_rate`, no seq_lengths) under the "scan" implementation; all
  else runs layer by layer ("fused"/"cudnn": a fused wavefront kernel was
  slower, docs/benchmarks.md).
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
  # Deep and regularised variants; the defaults give the plain stack.
  hidden_sizes: Sequence[int] | None = None  # per layer; else hidden_size
  residual: bool = False
  layer_norm: bool = False
  bidirectional: bool = False
  merge: str = "concat"  # bidirectional: "concat" or "sum"
  input_dropout_rate: float = 0.0  # variational, per layer input
  output_dropout_rate: float = 0.0  # variational, per layer output
  recurrent_dropout_rate: float = 0.0  # variational, on H_{t-1}
  zoneout_rate: float = 0.0

  def layer_sizes(self) -> tuple[int, ...]:
    sizes = tuple(self.hidden_sizes or (self.hidden_size,) * self.num_layers)
    if len(sizes) != self.num_layers:
      raise UserError(f"hidden_sizes {sizes} has {len(sizes)} entries for "
                      f"num_layers={self.num_layers}; give one per layer.")
    return sizes

  def output_size(self) -> int:
    last = self.layer_sizes()[-1]
    return 2 * last if self.bidirectional and self.merge == "concat" else last

  def is_plain(self) -> bool:
    return not (self.bidirectional or self.residual or self.layer_norm or
                self.input_dropout_rate or self.output_dropout_rate or
                self.recurrent_dropout_rate or self.zoneout_rate or
                len(set(self.layer_sizes())) > 1)

  def make_cell(self, hidden_size: int | None = None,
                **kwargs) -> cells_lib.RecurrentCell:
    return cells_lib.create_cell(
        self.cell, hidden_size or self.hidden_size, self.cell_options,
        dtype=self.dtype, param_dtype=self.param_dtype, **kwargs)

  def setup(self):
    if self.num_layers <= 0:
      raise UserError(f"num_layers must be positive, got {self.num_layers}.")
    lookup({s: s for s in SCHEDULES}, self.schedule, "layer schedule")
    lookup(MERGES, self.merge, "bidirectional merge")
    for name in ("dropout_rate", "input_dropout_rate", "output_dropout_rate",
                 "recurrent_dropout_rate", "zoneout_rate"):
      rate = getattr(self, name)
      if not 0 <= rate < 1:
        raise UserError(f"{name} must be in [0, 1), got {rate}.")
    if self.bidirectional:
      self.layers = [Bidirectional(
          self.make_cell(h, parent=None), merge=self.merge,
          hoist_input_projection=self.hoist_input_projection,
          unroll=self.unroll, implementation=self.implementation)
                     for h in self.layer_sizes()]
    else:
      self.layers = [self.make_cell(h) for h in self.layer_sizes()]
    if self.layer_norm:
      self.norms = [nn.LayerNorm(dtype=self.dtype,
                                 param_dtype=self.param_dtype)
                    for _ in range(self.num_layers)]
    self.dropout = Dropout(self.dropout_rate)

  def initialize_carry(self, batch_size: int) -> tuple[Any, ...]:
    """Zero float32 carries for every layer (pairs if bidirectional)."""
    carries = []
    for h in self.layer_sizes():
      carry = self.make_cell(h, parent=None).initialize_carry((batch_size,))
      carries.append((carry, carry) if self.bidirectional else carry)
    return tuple(carries)

  def __call__(self, xs: Array, carries: Sequence[Any] | None = None, *,
               train: bool = False, seq_lengths: Array | None = None):
    """seq_lengths [B]: right padding, as in `scan_cell`."""
    if carries is None:
      carries = self.initialize_carry(xs.shape[0])
    implementation = implementations.implementation_for(
        self.make_cell(parent=None), self.implementation)
    if (self.schedule == "wavefront" and self.num_layers > 1 and
        implementation == "scan" and seq_lengths is None and
        self.is_plain()):
      return self._wavefront(xs, tuple(carries), train)
    batch = xs.shape[0]
    valid = (None if seq_lengths is None else
             length_mask(seq_lengths, xs.shape[1])[..., None])
    new_carries = []
    for i, (layer, size) in enumerate(zip(self.layers, self.layer_sizes())):
      inputs = xs
      if i > 0:
        xs = self.dropout(xs, deterministic=not train)
      xs = self._variational(xs, self.input_dropout_rate, train)
      directions = 2 if self.bidirectional else 1
      hidden_masks = [self._hidden_mask(batch, size, train)
                      for _ in range(directions)]
      zoneouts = [self._zoneout(carries[i][d] if self.bidirectional
                                else carries[i], xs.shape[1], train)
                  for d in range(directions)]
      if self.bidirectional:
        carry, xs = layer(xs, carries[i], seq_lengths, hidden_masks=hidden_masks,
                          zoneouts=zoneouts)
      else:
        carry, xs = scan_cell(
            layer, carries[i], xs,
            hoist_input_projection=self.hoist_input_projection,
            unroll=self.unroll, implementation=self.implementation,
            seq_lengths=seq_lengths, hidden_mask=hidden_masks[0],
            zoneout=zoneouts[0])
      xs = self._variational(xs, self.output_dropout_rate, train)
      xs = self._merge_input(i, inputs, xs)
      if valid is not None and (self.layer_norm or self.residual):
        xs = jnp.where(valid, xs, jnp.zeros_like(xs))  # padding stays 0
      new_carries.append(carry)
    return tuple(new_carries), xs

  def _merge_input(self, i, inputs, ys):
    """Layer norm, then the residual connection where widths match."""
    if self.layer_norm:
      ys = self.norms[i](ys)
    if self.residual and i > 0 and inputs.shape[-1] == ys.shape[-1]:
      ys = ys + inputs.astype(ys.dtype)
    return ys

  def _variational(self, xs, rate, train):
    """One dropout mask per sequence, shared by all steps: xs [B, T, D]."""
    if not train or rate == 0:
      return xs
    keep = hashrng.keep_mask(self.make_rng("dropout"),
                             (xs.shape[0], 1, xs.shape[-1]), rate)
    return jnp.where(keep, xs / (1 - rate), 0).astype(xs.dtype)

  def _hidden_mask(self, batch, size, train):
    if not train or self.recurrent_dropout_rate == 0:
      return None
    rate = self.recurrent_dropout_rate
    keep = hashrng.keep_mask(self.make_rng("dropout"), (batch, size), rate)
    return keep.astype(jnp.float32) / (1 - rate)

  def _zoneout(self, carry, steps, train):
    if self.zoneout_rate == 0:
      return None
    if not train:
      return Zoneout(self.zoneout_rate)
    keep = jax.tree.map(
        lambda c: hashrng.keep_mask(
            self.make_rng("dropout"), (c.shape[0], steps) + c.shape[1:],
            self.zoneout_rate), carry)
    return Zoneout(self.zoneout_rate, keep)

  def step(self, x: Array, carries: Sequence[Any], deltas=None):
    """One time step of every layer: x [B, D] -> (carries, y [B, H]).

    For generation, where a scan of length 1 per layer (and the wavefront's
    extra iteration) would cost more than the step itself. Eval mode.
    deltas: one carry-shaped tree per layer, added to each layer's new
    carry before its output is read from it, so that ∂L/∂deltas = ∂L/∂carry
    through every path (`rnnlab.diagnose`).
    """
    if self.bidirectional:
      raise UserError(
          "A bidirectional stack cannot run one step at a time: its backward "
          "direction reads the sequence from its end.")
    new_carries = []
    for i, (cell, carry) in enumerate(zip(self.layers, carries)):
      new_carry, y = cell(carry, x)
      if self.zoneout_rate:
        rate = self.zoneout_rate
        new_carry = jax.tree.map(lambda n, o: rate * o + (1 - rate) * n,
                                 new_carry, carry)
        y = type(cell).hidden_of(new_carry).astype(y.dtype)
      if deltas is not None:
        new_carry = jax.tree.map(jnp.add, new_carry, deltas[i])
        y = type(cell).hidden_of(new_carry).astype(y.dtype)
      x = self._merge_input(i, x, y)
      new_carries.append(new_carry)
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


def _cell_options(c) -> flax.core.FrozenDict:
  return flax.core.FrozenDict({k: c[k] for k in cell_option_keys()
                               if k in c})


def cell_from_config(c) -> cells_lib.RecurrentCell:
  """`config.model`'s cell, unbound (each layer runs one like it); raises
  UserError on unknown names."""
  return cells_lib.create_cell(
      c.cell, c.hidden_size, _cell_options(c),
      dtype=lookup(DTYPES, c.dtype, "dtype"),
      param_dtype=lookup(DTYPES, c.param_dtype, "param_dtype"))


def stack_kwargs_from_config(c) -> dict[str, Any]:
  """`config.model` -> RecurrentStack fields; validates names and sizes."""
  options = _cell_options(c)
  # Fail fast (before tracing) on names and on an implementation that
  # cannot run the cell.
  implementations.check_runs(cell_from_config(c), c.implementation)
  return dict(
      cell=c.cell, hidden_size=c.hidden_size, num_layers=c.num_layers,
      dropout_rate=c.dropout_rate, cell_options=options,
      hoist_input_projection=c.hoist_input_projection, unroll=c.unroll,
      schedule=c.layer_schedule, implementation=c.implementation,
      dtype=lookup(DTYPES, c.dtype, "dtype"),
      param_dtype=lookup(DTYPES, c.param_dtype, "param_dtype"),
      hidden_sizes=tuple(c.hidden_sizes) or None, residual=c.residual,
      layer_norm=c.layer_norm, bidirectional=c.bidirectional,
      merge=c.bidirectional_merge, input_dropout_rate=c.input_dropout,
      output_dropout_rate=c.output_dropout,
      recurrent_dropout_rate=c.recurrent_dropout, zoneout_rate=c.zoneout)
