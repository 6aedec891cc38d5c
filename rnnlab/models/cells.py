"""Recurrent cells: Elman RNN, LSTM and GRU as Flax Linen modules.

Shape legend: B batch, D input features, H hidden size, G gates per cell.

Every cell splits its step into two parts so that a layer can hoist the input
projection out of the time loop (see `rnnlab.models.layers.Recurrent`):

  project_inputs(x)        x [..., D] -> [..., G*H]   all gates, one matmul
  recurrence(carry, xp)    the rest of the step, given projected inputs xp
  __call__(carry, x)       = recurrence(carry, project_inputs(x))

Both take an optional `hidden_mask` [B, H]: variational recurrent dropout
(Gal & Ghahramani 2016) multiplies H_{t-1} by it where H_{t-1} enters the
recurrent matmuls only, so the carried state itself is not dropped.

Gate weights are fused: one input matmul and one hidden matmul cover all
gates. Parameters may be any dtype (`param_dtype`, compute in `dtype`), but
gate nonlinearities and carries are float32 so that long sequences do not
accumulate low-precision rounding error in the state.

Gate order inside the fused G*H axis follows PyTorch (LSTM i,f,g,o; GRU r,z,n)
so weights port between the two by reshaping only.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from rnnlab.errors import UserError
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
  """Base class. Subclasses set `num_gates` and implement `recurrence`."""

  hidden_size: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  num_gates: ClassVar[int] = 1
  # Model-config keys (besides hidden_size/dtypes) this cell takes as fields.
  config_keys: ClassVar[tuple[str, ...]] = ()

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

  def supports_fused(self) -> bool:
    """Whether a step is `gate(carry, xp, hidden_of(carry) @ W_hh)` with a
    purely elementwise gate, as the fused kernel (`fused.py`) needs."""
    return True

  @staticmethod
  def hidden_of(carry: Carry) -> Array:
    """The part of the carry that multiplies the recurrent kernel."""
    return carry

  def gate_function(self) -> Callable[..., tuple[Carry, Array]]:
    """Pure `gate(carry, xp, hp, extras) -> (carry, y)`, elementwise only.

    xp: input terms [B, G*H]; hp: hidden_of(carry) @ W_hh; extras: the
    parameters the gate uses directly (`gate_extras`).
    """
    raise NotImplementedError

  def gate_extras(self) -> dict[str, Array]:
    return {}

  def recurrence(self, carry: Carry, xp: Array,
                 hidden_mask: Array | None = None) -> tuple[Carry, Array]:
    hp = self.hidden_proj(_masked(self.hidden_of(carry), hidden_mask))
    return self.gate_function()(carry, xp, hp, self.gate_extras())

  def __call__(self, carry: Carry, x: Array,
               hidden_mask: Array | None = None) -> tuple[Carry, Array]:
    return self.recurrence(carry, self.project_inputs(x), hidden_mask)

  def initialize_carry(self, batch_shape: tuple[int, ...]) -> Carry:
    return jnp.zeros((*batch_shape, self.hidden_size), jnp.float32)


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
  config_keys: ClassVar[tuple[str, ...]] = ("activation",)

  def gate_function(self):
    phi = lookup(ACTIVATIONS, self.activation, "activation")

    def gate(h, xp, hp, extras):
      del h, extras
      h = phi(_preactivation(xp, hp))
      return h, h

    return gate


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
  config_keys: ClassVar[tuple[str, ...]] = ("forget_bias",)

  def input_bias_init(self, key, shape, dtype=jnp.float32):
    h = self.hidden_size
    return jnp.zeros(shape, dtype).at[h:2 * h].set(self.forget_bias)

  @staticmethod
  def hidden_of(carry):
    return carry[1]

  def gate_function(self):
    return _lstm_gate

  def initialize_carry(self, batch_shape):
    zeros = super().initialize_carry(batch_shape)
    return zeros, zeros


def _lstm_gate(carry, xp, hp, extras):
  del extras
  c, _ = carry
  i, f, g, o = jnp.split(_preactivation(xp, hp), 4, axis=-1)
  c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
  h = jax.nn.sigmoid(o) * jnp.tanh(c)
  return (c, h), h


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
  and a dependent [H, H], and it matches PyTorch/cuDNN weights.
  PyTorch writes H_t = (1 - z) ∘ n + z ∘ H_{t-1}, i.e. its z is our 1 - Z;
  porting weights negates the update-gate rows and bias.

  Carry: H [B, H] float32. Output: H_t.
  """

  reset_after: bool = True
  num_gates: ClassVar[int] = 3
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
    return self.reset_after

  def gate_extras(self):
    if self.reset_after:
      return {"hidden_candidate_bias": self.hidden_candidate_bias}
    return {}

  def gate_function(self):
    if not self.reset_after:
      raise NotImplementedError("The reset-before GRU has a matmul inside "
                                "its gate; it runs as a plain recurrence.")
    return _gru_reset_after_gate

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


def _gru_reset_after_gate(h, xp, hp, extras):
  xr, xz, xn = jnp.split(xp, 3, axis=-1)
  hr, hz, hn = jnp.split(hp, 3, axis=-1)
  hn = hn + extras["hidden_candidate_bias"].astype(hn.dtype)
  r = jax.nn.sigmoid(_preactivation(xr, hr))
  z = jax.nn.sigmoid(_preactivation(xz, hz))
  n = jnp.tanh(xn.astype(jnp.float32) + r * hn.astype(jnp.float32))
  h = (1.0 - z) * h + z * n
  return h, h


CELLS: dict[str, type[RecurrentCell]] = {
    "rnn": ElmanCell,
    "lstm": LSTMCell,
    "gru": GRUCell,
}


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
