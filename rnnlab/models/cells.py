"""Recurrent cells: Elman RNN, LSTM and GRU as Flax Linen modules.

Shape legend: B batch, D input features, H hidden size, G gates per cell.

A cell defines its step once, in one of two forms, and every implementation
of a layer (`rnnlab.models.implementations`) derives from that definition:

  gate(carry, xp, hp, extras) -> (carry, y)     the fused form
      The step is one hidden matmul, hp = hidden_of(carry) @ W_h, then this
      elementwise function. "scan", "fused" and (for a cell with a kernel
      of its own, `native_code`) "native" all run it.
  recurrence(carry, xp, hidden_mask=None) -> (carry, y)   the general form
      Any other step (e.g. a matmul after a gate). Only "scan" runs it;
      by default it is the fused form: hp from `hidden_proj`, then `gate`.

Around either, the base class gives
  project_inputs(x)   x [..., D] -> xp [..., G*H]: every gate's input term,
                      biases included, in one matmul that a layer hoists
                      out of the time loop
  __call__(carry, x, hidden_mask=None) = recurrence(carry, project_inputs(x))

hidden_mask [B, H]: variational recurrent dropout (Gal & Ghahramani 2016)
multiplies H_{t-1} by it where H_{t-1} enters the recurrent matmuls only, so
the carried state itself is not dropped.

A cell declares its gate blocks (`gate_names`, the G blocks of xp in order)
and its carry (`carry_names`: one [B, H] float32 array per name, a tuple in
that order when there are several; "h" is the hidden state that multiplies
W_h and is the output). Readers such as `rnnlab.diagnose` take them from
here.

Gate weights are fused: one input matmul and one hidden matmul cover all
gates. Parameters may be any dtype (`param_dtype`, compute in `dtype`), but
gate nonlinearities and carries are float32 so that long sequences do not
accumulate low-precision rounding error in the state.

Gate order inside the fused G*H axis follows PyTorch (LSTM i,f,g,o; GRU r,z,n)
so weights port between the two by reshaping only.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from rnnlab.errors import UserError
from rnnlab.native import recurrence as native_recurrence
from rnnlab.registry import lookup

Array = jax.Array
Carry = Any

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
}


def stacked(init: nn.initializers.Initializer, num_blocks: int):
  """Initialises a fused [in, G*H] kernel as G independent [in, H] blocks.

  An orthogonal init of the whole [H, G*H] matrix would only make its rows
  orthonormal; each gate's recurrent block should be orthogonal on its own.
  """

  def init_fn(key, shape, dtype=jnp.float32):
    fan_in, total = shape
    keys = jax.random.split(key, num_blocks)
    # float32, then cast: the QR behind orthogonal init has no bf16 kernel.
    blocks = [init(k, (fan_in, total // num_blocks), jnp.float32)
              for k in keys]
    return jnp.concatenate(blocks, axis=-1).astype(dtype)

  return init_fn


class RecurrentCell(nn.Module):
  """Base class: a subclass sets `num_gates` and `gate_names`, and defines
  its step as `gate` (the fused form) or `recurrence` (the general form)."""

  hidden_size: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  num_gates: ClassVar[int] = 1
  # The G blocks of xp (and of `hidden_proj`), in order.
  gate_names: ClassVar[tuple[str, ...]] = ("h",)
  # The carry's parts in jax.tree order, each [B, H] float32; "h" is the
  # hidden state (`hidden_of`).
  carry_names: ClassVar[tuple[str, ...]] = ("h",)
  # Model-config keys (besides hidden_size/dtypes) this cell takes as fields.
  config_keys: ClassVar[tuple[str, ...]] = ()

  def __init_subclass__(cls, **kwargs):
    super().__init_subclass__(**kwargs)
    own = vars(cls)
    if "gate" in own and "recurrence" in own and "supports_fused" not in own:
      # Which one is the step? "fused" would run the gate, "scan" the other.
      raise TypeError(
          f"{cls.__name__} defines both `gate` (the fused form) and "
          "`recurrence` (the general form): define one, or also "
          "`supports_fused` to say when `recurrence` is `gate` after the "
          "hidden matmul (as GRUCell does).")
    if len(cls.gate_names) != cls.num_gates:
      raise TypeError(
          f"{cls.__name__}: gate_names {cls.gate_names} must name its "
          f"num_gates={cls.num_gates} gate blocks, in order.")
    if "h" not in cls.carry_names:
      raise TypeError(f"{cls.__name__}: carry_names {cls.carry_names} must "
                      "include 'h', the hidden state.")

  def input_bias_init(self, key, shape, dtype=jnp.float32):
    return jnp.zeros(shape, dtype)

  def setup(self):
    self.input_proj = nn.Dense(
        self.num_gates * self.hidden_size,
        kernel_init=nn.initializers.lecun_normal(),
        bias_init=self.input_bias_init,
        dtype=self.dtype, param_dtype=self.param_dtype)
    self.hidden_proj = self._hidden_dense(self.num_hidden_blocks())

  def num_hidden_blocks(self) -> int:
    """Gates whose hidden term comes from the fused `hidden_proj` matmul."""
    return self.num_gates

  def _hidden_dense(self, num_blocks: int) -> nn.Dense:
    return nn.Dense(
        num_blocks * self.hidden_size, use_bias=False,
        kernel_init=stacked(nn.initializers.orthogonal(), num_blocks),
        dtype=self.dtype, param_dtype=self.param_dtype)

  def project_inputs(self, x: Array) -> Array:
    """x [..., D] -> [..., G*H]: input term of every gate, biases included."""
    return self.input_proj(x)

  def gate(self, carry: Carry, xp: Array, hp: Array,
           extras: dict[str, Array]) -> tuple[Carry, Array]:
    """The fused form of the step: (carry, xp [B, G*H], hp [B, G*H]) ->
    (new carry, y [B, H]), with hp = hidden_of(carry) @ W_h.

    Elementwise only, a function of its arguments and the cell's fields:
    the "fused" and "native" kernels call it outside the module and
    differentiate it step by step. Parameters it reads directly (beyond
    W_x, b and W_h) come in `extras` (`gate_extras`).
    """
    raise NotImplementedError(
        f"{type(self).__name__} defines neither `gate` nor `recurrence`.")

  def gate_extras(self) -> dict[str, Array]:
    return {}

  def supports_fused(self) -> bool:
    """Whether the step is `gate` after one hidden matmul (the "fused" and
    "native" kernels run exactly that): the class that defines `gate` also
    owns the rest of the step (`_gate_is_the_step`). A subclass of a
    built-in cell that overrides `recurrence` is therefore not run with its
    parent's gate."""
    return _gate_is_the_step(type(self))

  def native_code(self) -> int | None:
    """The native kernels' code for this class's gates (`recurrence.cc`
    hard-codes each), or None. It holds for the class that defines it only
    (`implementations.native_cell_code`): a subclass may change the step."""
    return None

  def init_notes(self) -> dict[str, str]:
    """How this cell's own parameters start and which form it has, beyond
    the base class's initialisers (reported by `rnnlab.diagnose`)."""
    return {}

  def recurrence(self, carry: Carry, xp: Array,
                 hidden_mask: Array | None = None) -> tuple[Carry, Array]:
    """The step after the input projection: (carry, xp [B, G*H]) -> (new
    carry, y [B, H]). Here the fused form: the hidden matmul, then `gate`."""
    hp = self.hidden_proj(_masked(self.hidden_of(carry), hidden_mask))
    return self.gate(carry, xp, hp, self.gate_extras())

  def __call__(self, carry: Carry, x: Array,
               hidden_mask: Array | None = None) -> tuple[Carry, Array]:
    return apply_recurrence(self, carry, self.project_inputs(x), hidden_mask)

  @classmethod
  def hidden_of(cls, carry: Carry) -> Array:
    """The carry's part "h": it multiplies the recurrent kernel."""
    if len(cls.carry_names) == 1:
      return carry
    return carry[cls.carry_names.index("h")]

  def initialize_carry(self, batch_shape: tuple[int, ...]) -> Carry:
    zeros = jnp.zeros((*batch_shape, self.hidden_size), jnp.float32)
    if len(self.carry_names) == 1:
      return zeros
    return tuple(zeros for _ in self.carry_names)


def _owner(cls: type, name: str) -> type:
  """The class in cls's MRO whose body defines `name`."""
  return next(k for k in cls.__mro__ if name in vars(k))


def _gate_is_the_step(cls: type[RecurrentCell]) -> bool:
  """Whether `cls`'s step is its `gate` after the hidden matmul.

  `gate` must be defined, `project_inputs` must be the base's (the kernels
  compute xp = x W_x + b themselves), and `recurrence` either the base's or
  defined at or above the gate by a class that has a gate of its own (and
  so chose when to run it, as GRUCell does for its reset-after form).
  """
  gate = _owner(cls, "gate")
  step = _owner(cls, "recurrence")
  return (gate is not RecurrentCell and
          _owner(cls, "project_inputs") is RecurrentCell and
          (step is RecurrentCell or
           (issubclass(gate, step) and "gate" in vars(step))))


def apply_recurrence(cell: RecurrentCell, carry: Carry, xp: Array,
                     hidden_mask: Array | None = None) -> tuple[Carry, Array]:
  """`cell.recurrence(carry, xp)`, passing hidden_mask only when there is
  one: a general-form cell may leave that argument out, and then refuses
  recurrent dropout by name instead of with a TypeError."""
  if hidden_mask is None:
    return cell.recurrence(carry, xp)
  if "hidden_mask" not in inspect.signature(cell.recurrence).parameters:
    raise UserError(
        f"{type(cell).__name__}.recurrence(carry, xp) takes no hidden_mask, "
        "so recurrent dropout (config.model.recurrent_dropout) cannot reach "
        "its recurrent matmuls; give it a hidden_mask=None argument that "
        "multiplies H_{t-1} where it enters them.")
  return cell.recurrence(carry, xp, hidden_mask=hidden_mask)


def _masked(h: Array, mask: Array | None) -> Array:
  return h if mask is None else h * mask


def _preactivation(xp: Array, hp: Array) -> Array:
  """Gate pre-activations in float32, whatever the compute dtype."""
  return (xp + hp).astype(jnp.float32)


class ElmanCell(RecurrentCell):
  """Elman RNN: H_t = φ(W_xh x_t + W_hh H_{t-1} + b), φ = tanh or relu.

  Carry: H [B, H] float32. Output: H_t.
  """

  activation: str = "tanh"
  num_gates: ClassVar[int] = 1
  gate_names: ClassVar[tuple[str, ...]] = ("h",)
  config_keys: ClassVar[tuple[str, ...]] = ("activation",)

  def gate(self, h, xp, hp, extras):
    del h, extras
    phi = lookup(ACTIVATIONS, self.activation, "activation")
    h = phi(_preactivation(xp, hp))
    return h, h

  def native_code(self):
    return native_recurrence.CELL_CODES.get(("rnn", self.activation))

  def init_notes(self):
    return {"activation": self.activation}


class LSTMCell(RecurrentCell):
  """LSTM (Hochreiter & Schmidhuber; forget gate of Gers et al.).

    I_t = σ(W_xi x_t + W_hi H_{t-1} + b_i)        input gate
    F_t = σ(W_xf x_t + W_hf H_{t-1} + b_f)        forget gate
    O_t = σ(W_xo x_t + W_ho H_{t-1} + b_o)        output gate
    C̃_t = tanh(W_xc x_t + W_hc H_{t-1} + b_c)     candidate
    C_t = F_t ∘ C_{t-1} + I_t ∘ C̃_t
    H_t = O_t ∘ tanh(C_t)

  Carry: (C, H), each [B, H] float32 (Flax's order). Output: H_t.
  `forget_bias` initialises b_f (1.0 keeps early gradients flowing through
  the cell state, Jozefowicz et al. 2015).
  """

  forget_bias: float = 1.0
  num_gates: ClassVar[int] = 4
  gate_names: ClassVar[tuple[str, ...]] = ("i", "f", "g", "o")
  carry_names: ClassVar[tuple[str, ...]] = ("c", "h")
  config_keys: ClassVar[tuple[str, ...]] = ("forget_bias",)

  def input_bias_init(self, key, shape, dtype=jnp.float32):
    h = self.hidden_size
    return jnp.zeros(shape, dtype).at[h:2 * h].set(self.forget_bias)

  def gate(self, carry, xp, hp, extras):
    del extras
    c, _ = carry
    i, f, g, o = jnp.split(_preactivation(xp, hp), 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return (c, h), h

  def native_code(self):
    return native_recurrence.LSTM

  def init_notes(self):
    return {"biases": f"zero, except the forget gate: {self.forget_bias} "
                      "(carried in the input projection's bias)"}


class GRUCell(RecurrentCell):
  """GRU (Cho et al. 2014) in the chapter's form.

    R_t = σ(W_xr x_t + W_hr H_{t-1} + b_r)                reset gate
    Z_t = σ(W_xz x_t + W_hz H_{t-1} + b_z)                update gate
    reset_after=False ("reset before", chapter, Cho et al.):
      H̃_t = tanh(W_xh x_t + W_hh (R_t ∘ H_{t-1}) + b_h)
    reset_after=True  ("reset after", PyTorch, cuDNN; the default):
      H̃_t = tanh(W_xh x_t + R_t ∘ (W_hh H_{t-1} + b_hh) + b_h)
    H_t = (1 - Z_t) ∘ H_{t-1} + Z_t ∘ H̃_t

  Default: reset after, because its candidate needs no second hidden matmul
  on R_t ∘ H_{t-1}: one fused [H, 3H] matmul per step instead of a [H, 2H]
  and a dependent [H, H], and it matches PyTorch/cuDNN weights. Reset after
  is the fused form (`gate`); reset before the general one (`recurrence`).
  PyTorch writes H_t = (1 - z) ∘ n + z ∘ H_{t-1}, i.e. its z is our 1 - Z;
  porting weights negates the update-gate rows and bias.

  Carry: H [B, H] float32. Output: H_t.
  """

  reset_after: bool = True
  num_gates: ClassVar[int] = 3
  gate_names: ClassVar[tuple[str, ...]] = ("r", "z", "n")
  config_keys: ClassVar[tuple[str, ...]] = ("reset_after",)

  def num_hidden_blocks(self):
    # Reset before: hidden_proj covers r and z; the candidate has its own.
    return 3 if self.reset_after else 2

  def setup(self):
    super().setup()
    if self.reset_after:
      self.hidden_candidate_bias = self.param(
          "hidden_candidate_bias", nn.initializers.zeros_init(),
          (self.hidden_size,), self.param_dtype)
    else:
      self.candidate_proj = self._hidden_dense(1)

  def supports_fused(self):
    # Reset before has a matmul inside the gate, on R_t ∘ H_{t-1}.
    return self.reset_after and super().supports_fused()

  def gate_extras(self):
    if self.reset_after:
      return {"hidden_candidate_bias": self.hidden_candidate_bias}
    return {}

  def gate(self, h, xp, hp, extras):
    xr, xz, xn = jnp.split(xp, 3, axis=-1)
    hr, hz, hn = jnp.split(hp, 3, axis=-1)
    hn = hn + extras["hidden_candidate_bias"].astype(hn.dtype)
    r = jax.nn.sigmoid(_preactivation(xr, hr))
    z = jax.nn.sigmoid(_preactivation(xz, hz))
    n = jnp.tanh(xn.astype(jnp.float32) + r * hn.astype(jnp.float32))
    h = (1.0 - z) * h + z * n
    return h, h

  def recurrence(self, h, xp, hidden_mask=None):
    if self.reset_after:
      return super().recurrence(h, xp, hidden_mask)
    xr, xz, xn = jnp.split(xp, 3, axis=-1)
    dropped = _masked(h, hidden_mask)  # in the matmuls; H_t uses h itself
    hr, hz = jnp.split(self.hidden_proj(dropped), 2, axis=-1)
    r = jax.nn.sigmoid(_preactivation(xr, hr))
    z = jax.nn.sigmoid(_preactivation(xz, hz))
    n = jnp.tanh(_preactivation(xn, self.candidate_proj(r * dropped)))
    h = (1.0 - z) * h + z * n
    return h, h

  def native_code(self):
    return native_recurrence.GRU

  def init_notes(self):
    return {"biases": ("zero (input projection and hidden_candidate_bias)"
                       if self.reset_after else "zero"),
            "form": "reset after" if self.reset_after else "reset before"}


CELLS: dict[str, type[RecurrentCell]] = {
    "rnn": ElmanCell,
    "lstm": LSTMCell,
    "gru": GRUCell,
}


def cell_name(cell: RecurrentCell) -> str:
  """The name `cell`'s class has in CELLS (else its class name)."""
  return next((name for name, cls in CELLS.items() if cls is type(cell)),
              type(cell).__name__)


def create_cell(name: str, hidden_size: int, options: Any = None, *,
                dtype=jnp.float32, param_dtype=jnp.float32,
                **module_kwargs) -> RecurrentCell:
  """Builds the cell `name`, taking its specific fields from `options`.

  `options` is any mapping (e.g. the model ConfigDict); only the keys the
  cell declares in `config_keys` are read from it.
  """
  cls = lookup(CELLS, name, "cell")
  if hidden_size <= 0:
    raise UserError(f"hidden_size must be positive, got {hidden_size}.")
  kwargs = {k: options[k] for k in cls.config_keys if options and k in options}
  if "activation" in kwargs:
    lookup(ACTIVATIONS, kwargs["activation"], "activation")
  return cls(hidden_size=hidden_size, dtype=dtype, param_dtype=param_dtype,
             **kwargs, **module_kwargs)
