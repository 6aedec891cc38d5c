"""Optimizers and learning-rate schedules built from `config.optim`.

`create_optimizer` builds, in order of application:

  clip (global norm or per value)
  -> optimizer: direction (adam, sgd momentum, ...) -> decoupled weight decay
     -> learning-rate scaling with the schedule
  -> plateau scale (schedule="reduce_on_plateau")
  -> freeze (c.freeze params get a zero update and no optimizer state)
  -> weight average (c.ema_decay > 0): an exponential moving average of the
     parameters after each update, kept in the optimizer state

Freezing is the outermost wrapper (optax.partition), so frozen parameters are
also left out of the clipping norm, as if they were not parameters at all.

Parameters are named by their "/"-joined path, e.g. "embed/embedding" or
"rnn/layers_0/cell/hh/kernel"; c.sparse_params and c.freeze are regexes
matched anywhere in that path (`re.search`).

The trainer must:
  * call `tx.update(grads, opt_state, params, token_ids=batch_ids)` when it
    can (only sparse_adam reads token_ids; other optimizers ignore it);
  * call `opt_state = report_validation(opt_state, val_loss, c)` after each
    evaluation (a no-op unless schedule="reduce_on_plateau");
  * log `schedule(step) * lr_scale(opt_state)` as the learning rate and
    `clip_fired(grads, c)` for the clipping frequency;
  * evaluate, sample and choose the best checkpoint with
    `evaluation_params(params, opt_state)`: the weight average when there is
    one, else the parameters.

Add an optimizer or schedule by writing a builder and registering it in
OPTIMIZERS / SCHEDULES below.
"""
from __future__ import annotations

import re
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import optax

from rnnlab.errors import UserError
from rnnlab.registry import lookup

Params = Any
Mask = Callable[[Params], Any]  # params -> same tree of bools


# --------------------------------------------------------------------------
# Parameter paths and masks.


def param_path(key_path) -> str:
  """A jax key path as rnnlab names parameters: "embed/embedding"."""
  return jax.tree_util.keystr(key_path, simple=True, separator="/")


def param_paths(params: Params) -> list[str]:
  return [param_path(k) for k, _ in
          jax.tree_util.tree_flatten_with_path(params)[0]]


def _patterns(patterns: str | Sequence[str], key: str) -> list[re.Pattern]:
  if isinstance(patterns, str):  # a single regex given on the command line
    patterns = (patterns,)
  compiled = []
  for p in patterns:
    try:
      compiled.append(re.compile(p))
    except re.error as e:
      raise UserError(f"config.optim.{key}: bad regex {p!r}: {e}.") from None
  return compiled


def path_mask(patterns: str | Sequence[str], key: str = "patterns") -> Mask:
  """params -> tree of bools: True where any regex matches the param path.

  A callable, so it needs no params at build time; it is also applied to
  update trees (same structure), as optax.masked does.
  """
  compiled = _patterns(patterns, key)
  return lambda tree: jax.tree_util.tree_map_with_path(
      lambda k, _: any(p.search(param_path(k)) for p in compiled), tree)


def _unmatched(patterns: str | Sequence[str], key: str,
               params: Params) -> list[str]:
  paths = param_paths(params)
  return [p.pattern for p in _patterns(patterns, key)
          if not any(p.search(path) for path in paths)]


def weight_decay_mask(params: Params) -> Any:
  """True for parameters that get weight decay: matrices and larger.

  Biases, norm scales and every other 1-D (or scalar) parameter are excluded;
  the name check (any name ending in "bias" or "scale") also catches one
  stored with more axes: [1, H], or an ensemble's [M, H] (a
  ClassifierEnsemble stacks every parameter on a leading axis).
  """
  def decays(key_path, x):
    name = param_path(key_path).rsplit("/", 1)[-1]
    return jnp.ndim(x) >= 2 and not name.endswith(("bias", "scale"))
  return jax.tree_util.tree_map_with_path(decays, params)


# --------------------------------------------------------------------------
# Schedules: builder(c, total_steps, steps_per_epoch) -> optax.Schedule.


def constant(c: ml_collections.ConfigDict, total_steps: int,
             steps_per_epoch: int | None = None) -> optax.Schedule:
  """c.learning_rate, after an optional linear warm-up from 0."""
  del total_steps, steps_per_epoch
  if c.warmup_steps:
    return optax.linear_schedule(0.0, c.learning_rate, c.warmup_steps)
  return optax.constant_schedule(c.learning_rate)


def warmup_cosine(c: ml_collections.ConfigDict, total_steps: int,
                  steps_per_epoch: int | None = None) -> optax.Schedule:
  """Linear warm-up to the peak, then cosine decay to final_lr_fraction."""
  del steps_per_epoch
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=c.learning_rate,
      warmup_steps=c.warmup_steps,
      decay_steps=max(total_steps, c.warmup_steps + 1),
      end_value=c.learning_rate * c.final_lr_fraction)


def exponential(c: ml_collections.ConfigDict, total_steps: int,
                steps_per_epoch: int | None = None) -> optax.Schedule:
  """char-rnn's decay: x decay_rate at the end of each late enough epoch.

  As char-rnn does, the learning rate is multiplied by decay_rate at the end
  of every epoch e (counted from 1) with e >= decay_after_epochs. With
  E = step // steps_per_epoch completed epochs, that is

    lr(step) = learning_rate * decay_rate ** max(0, E - max(after, 1) + 1)

  (after = decay_after_epochs; 0 and 1 both decay from the end of epoch 1).
  An optional linear warm-up over warmup_steps multiplies it.
  """
  del total_steps
  if steps_per_epoch is None or int(steps_per_epoch) < 1:
    raise UserError(
        f"schedule 'exponential' decays per epoch and needs steps_per_epoch "
        f">= 1 (training batches per epoch); got {steps_per_epoch!r}. Use "
        "another schedule for data without epochs.")
  steps_per_epoch = int(steps_per_epoch)
  first = max(int(c.decay_after_epochs), 1)
  lr, rate, warmup = c.learning_rate, c.decay_rate, int(c.warmup_steps)

  def schedule(step):
    step = jnp.asarray(step)
    decays = jnp.maximum(0, step // steps_per_epoch - first + 1)
    value = lr * jnp.power(jnp.float32(rate), decays.astype(jnp.float32))
    if warmup:
      value *= jnp.minimum(step / warmup, 1.0).astype(jnp.float32)
    return value
  return schedule


SCHEDULES: dict[str, Callable[..., optax.Schedule]] = {
    "constant": constant,
    "warmup_cosine": warmup_cosine,
    "exponential": exponential,
    # The base schedule; the plateau scale in the optimizer state multiplies
    # it (see scale_by_plateau / report_validation).
    "reduce_on_plateau": constant,
}


def create_schedule(c: ml_collections.ConfigDict, total_steps: int,
                    steps_per_epoch: int | None = None) -> optax.Schedule:
  """The learning rate by step. For reduce_on_plateau this excludes the
  plateau scale: the effective rate is schedule(step) * lr_scale(opt_state).
  """
  make = lookup(SCHEDULES, c.schedule, "schedule")
  return make(c, total_steps, steps_per_epoch)


# --------------------------------------------------------------------------
# Sparse (lazy) Adam with torch.optim.SparseAdam semantics.


class SparseAdamState(NamedTuple):
  # Steps taken. Every table steps every update, so one count serves as
  # PyTorch's per-tensor step counter for all of them.
  count: jax.Array
  mu: optax.Updates
  nu: optax.Updates


def _present_rows(grad: jax.Array, token_ids: jax.Array | None) -> jax.Array:
  """[rows] bool: the rows a sparse gradient of this batch would hold."""
  if token_ids is None:
    return jnp.any(grad != 0, axis=tuple(range(1, grad.ndim)))
  # Rows are exactly the batch's ids, so a row whose gradient happens to be
  # zero still steps, as in PyTorch. Ids outside [0, rows), e.g. -1 padding,
  # mark nothing (negative ones are moved out of range so they do not wrap).
  rows = grad.shape[0]
  ids = jnp.ravel(jnp.asarray(token_ids))
  ids = jnp.where(ids < 0, rows, ids)
  return jnp.zeros(rows, bool).at[ids].set(True, mode="drop")


def scale_by_lazy_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
                       ) -> optax.GradientTransformationExtraArgs:
  """SparseAdam's direction for every leaf (rows = first axis); no lr.

  Present rows: m, v <- EMA with the gradient; the update is
  sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps) (eps on the uncorrected
  sqrt(v), as PyTorch). Absent rows keep m and v bit for bit and get a zero
  update. Row masks via jnp.where keep the shapes static (jittable).
  """
  def init_fn(params):
    for path, x in jax.tree_util.tree_flatten_with_path(params)[0]:
      if jnp.ndim(x) < 1:
        raise UserError(f"sparse_adam: parameter {param_path(path)!r} is a "
                        "scalar; sparse parameters need rows (a [V, ...] "
                        "table). Fix config.optim.sparse_params.")
    zeros = lambda t: jax.tree.map(jnp.zeros_like, t)
    return SparseAdamState(jnp.zeros([], jnp.int32), zeros(params),
                           zeros(params))

  def update_fn(updates, state, params=None, *, token_ids=None,
                **extra_args):
    del params, extra_args
    count = optax.safe_increment(state.count)

    def leaf(g, m, v):
      rows = _present_rows(g, token_ids)
      rows = rows.reshape(rows.shape + (1,) * (g.ndim - 1))
      # PyTorch's form of the EMA: old + (1 - b) * (new - old).
      m_new = jnp.where(rows, m + (1 - b1) * (g - m), m)
      v_new = jnp.where(rows, v + (1 - b2) * (g * g - v), v)
      t = count.astype(g.dtype)
      correction = jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t)
      u = jnp.where(rows, correction * m_new / (jnp.sqrt(v_new) + eps), 0)
      return u.astype(g.dtype), m_new, v_new

    treedef = jax.tree.structure(updates)
    out = [leaf(*x) for x in zip(jax.tree.leaves(updates),
                                 jax.tree.leaves(state.mu),
                                 jax.tree.leaves(state.nu))]
    pick = lambda i: jax.tree.unflatten(treedef, [o[i] for o in out])
    return pick(0), SparseAdamState(count, pick(1), pick(2))

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def scale_by_sparse_adam(b1: float = 0.9, b2: float = 0.999,
                         eps: float = 1e-8, sparse_mask: Mask | None = None
                         ) -> optax.GradientTransformationExtraArgs:
  """Lazy Adam for the `sparse_mask` params, optax.scale_by_adam for the rest.

  sparse_mask: params -> tree of bools; None = every parameter is sparse.
  """
  if sparse_mask is None:
    return scale_by_lazy_adam(b1, b2, eps)

  def labels(tree):
    return jax.tree.map(lambda s: "sparse" if s else "dense",
                        sparse_mask(tree))
  return optax.partition(
      {"sparse": scale_by_lazy_adam(b1, b2, eps),
       "dense": optax.scale_by_adam(b1=b1, b2=b2, eps=eps)}, labels)


def sparse_adam(learning_rate: optax.ScalarOrSchedule, b1: float = 0.9,
                b2: float = 0.999, eps: float = 1e-8,
                sparse_mask: Mask | None = None
                ) -> optax.GradientTransformationExtraArgs:
  """torch.optim.SparseAdam for the masked tables, optax.adam for the rest.

  Rows absent from the batch keep their parameters and both moments bit for
  bit. A row is present if the update gets `token_ids=` (any shape; ids into
  the first axis of every sparse table) and holds it, or, without token_ids,
  if any element of its gradient is nonzero. There is no weight decay, as in
  PyTorch (create_optimizer adds decoupled decay to dense params only).
  """
  return optax.chain(scale_by_sparse_adam(b1, b2, eps, sparse_mask),
                     optax.scale_by_learning_rate(learning_rate))


# --------------------------------------------------------------------------
# Optimizers: builder(c, learning_rate) -> GradientTransformationExtraArgs.


def _decoupled(c: ml_collections.ConfigDict,
               direction: optax.GradientTransformation,
               learning_rate: optax.ScalarOrSchedule,
               exclude: Mask | None = None
               ) -> optax.GradientTransformationExtraArgs:
  """direction -> + weight_decay * param -> x -learning_rate.

  The decay term is added after the optimizer's preconditioning and before
  the learning-rate scaling, so it is decoupled from the gradient statistics
  as in AdamW (and, as there, scaled by the learning rate). With
  weight_decay 0 this is exactly optax's own chain for that optimizer, so
  the optimizer state keeps optax's layout.
  """
  parts = [direction]
  if c.weight_decay > 0:
    mask = weight_decay_mask
    if exclude is not None:
      mask = lambda t: jax.tree.map(lambda d, e: d and not e,
                                    weight_decay_mask(t), exclude(t))
    parts.append(optax.add_decayed_weights(c.weight_decay, mask=mask))
  parts.append(optax.scale_by_learning_rate(learning_rate))
  return optax.chain(*parts)


def adam(c, lr):
  return _decoupled(c, optax.scale_by_adam(b1=c.b1, b2=c.b2, eps=c.eps), lr)


def adamw(c, lr):
  return optax.adamw(lr, b1=c.b1, b2=c.b2, eps=c.eps,
                     weight_decay=c.weight_decay, mask=weight_decay_mask)


def sgd(c, lr):
  """Plain SGD (momentum 0), or heavy-ball / Nesterov momentum."""
  direction = (optax.trace(decay=c.momentum, nesterov=c.nesterov)
               if c.momentum > 0 else optax.identity())
  return _decoupled(c, direction, lr)


def rmsprop(c, lr):
  """char-rnn's (torch7 optim.rmsprop): v <- decay v + (1 - decay) g^2,
  update g / (sqrt(v) + eps), v starting at 0, no bias correction."""
  return _decoupled(c, optax.scale_by_rms(decay=c.decay, eps=c.eps,
                                          initial_scale=0.0,
                                          eps_in_sqrt=False), lr)


def adagrad(c, lr):
  """optax's Adagrad (accumulator starts at 0.1) with eps c.eps."""
  return _decoupled(c, optax.scale_by_rss(initial_accumulator_value=0.1,
                                          eps=c.eps), lr)


def _sparse_adam(c, lr):
  """SparseAdam for c.sparse_params, Adam for the rest. Weight decay skips
  the sparse tables: decaying every row would break the laziness."""
  mask = path_mask(c.sparse_params, "sparse_params")
  tx = _decoupled(c, scale_by_sparse_adam(c.b1, c.b2, c.eps, mask), lr,
                  exclude=mask)

  def init_fn(params):
    if not any(jax.tree.leaves(mask(params))):
      raise UserError(
          f"optimizer 'sparse_adam': config.optim.sparse_params="
          f"{tuple(c.sparse_params)!r} matches no trainable parameter, so "
          "nothing is sparse (use 'adam'). Trainable parameters: "
          f"{', '.join(param_paths(params))}.")
    return tx.init(params)
  return optax.GradientTransformationExtraArgs(init_fn, tx.update)


OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformationExtraArgs]] = {
    "adam": adam,
    "adamw": adamw,
    "sgd": sgd,
    "rmsprop": rmsprop,
    "adagrad": adagrad,
    "sparse_adam": _sparse_adam,
}


# --------------------------------------------------------------------------
# Reduce-on-plateau: a scale in the optimizer state, driven by validation.


class PlateauState(NamedTuple):
  scale: jax.Array      # float32 multiplier of the updates (of the lr)
  best: jax.Array       # float32 best validation loss so far (inf at first)
  bad_evals: jax.Array  # int32 evaluations since the last improvement


def scale_by_plateau() -> optax.GradientTransformation:
  """Multiplies updates by the plateau scale that report_validation sets.

  The state lives in the optimizer state, so checkpoints save and restore
  it with everything else.
  """
  def init_fn(params):
    del params
    return PlateauState(jnp.ones([], jnp.float32),
                        jnp.full([], jnp.inf, jnp.float32),
                        jnp.zeros([], jnp.int32))

  def update_fn(updates, state, params=None):
    del params
    return jax.tree.map(lambda u: u * state.scale.astype(u.dtype),
                        updates), state

  return optax.GradientTransformation(init_fn, update_fn)


class AverageState(NamedTuple):
  """An exponential moving average of the parameters (Polyak averaging)."""
  average: Params  # float32 sum of decay^(t-i) (1 - decay) params_i
  weight: jax.Array  # float32 1 - decay^t: divides out the zero start


def average_params(decay: float) -> optax.GradientTransformation:
  """Leaves the updates as they are; tracks the average of params + updates,
  the parameters after each step. Its state is checkpointed with the rest,
  so a resumed run averages as an unbroken one."""
  def init_fn(params):
    return AverageState(
        jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params),
        jnp.zeros([], jnp.float32))

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("average_params needs the parameters.")
    new = optax.apply_updates(params, updates)
    average = jax.tree.map(
        lambda a, p: decay * a + (1 - decay) * p.astype(jnp.float32),
        state.average, new)
    return updates, AverageState(average, decay * state.weight + (1 - decay))

  return optax.GradientTransformation(init_fn, update_fn)


def _is_average(x) -> bool:
  return isinstance(x, AverageState)


def evaluation_params(params: Params, opt_state) -> Params:
  """The weights to evaluate: the (debiased) average of `opt_state` in
  `params`' dtypes if it holds one and has seen a step, else `params`."""
  found = [s for s in jax.tree.leaves(opt_state, is_leaf=_is_average)
           if _is_average(s)]
  if not found:
    return params
  state = found[0]
  weight = jnp.where(state.weight > 0, state.weight, 1.0)
  averaged = jax.tree.map(lambda a, p: (a / weight).astype(p.dtype),
                          state.average, params)
  # Before the first step the average is empty: the parameters stand in.
  return jax.tree.map(lambda a, p: jnp.where(state.weight > 0, a, p),
                      averaged, params)


def _is_plateau(x) -> bool:
  return isinstance(x, PlateauState)


def report_validation(opt_state, val_loss: float,
                      c: ml_collections.ConfigDict):
  """Feeds one validation loss to the plateau state(s) in `opt_state`.

  If val_loss < best * (1 - plateau_threshold): best = val_loss and the bad
  count resets. Otherwise the count grows, and when it reaches
  plateau_patience (PyTorch's ReduceLROnPlateau waits one more) the scale is
  multiplied by plateau_factor, floored at plateau_min_scale, and the count
  resets. A non-finite loss counts as no improvement.

  Pure: returns a new opt_state with the same structure, dtypes and shapes
  (it goes back into a jitted, donated step); unchanged if there is no
  plateau state. Works on host values and under jit.
  """
  def update(s):
    if not _is_plateau(s):
      return s
    loss = jnp.asarray(val_loss, s.best.dtype)
    improved = loss < s.best * (1 - c.plateau_threshold)
    best = jnp.where(improved, loss, s.best)
    bad = jnp.where(improved, 0, s.bad_evals + 1)
    reduce = bad >= c.plateau_patience
    lowered = jnp.maximum(s.scale * c.plateau_factor, c.plateau_min_scale)
    scale = jnp.where(reduce, lowered, s.scale)
    bad = jnp.where(reduce, 0, bad)
    return PlateauState(scale.astype(s.scale.dtype), best.astype(s.best.dtype),
                        bad.astype(s.bad_evals.dtype))
  return jax.tree.map(update, opt_state, is_leaf=_is_plateau)


def plateau_state(opt_state) -> PlateauState | None:
  """The (first) plateau state inside `opt_state`, or None."""
  found = [x for x in jax.tree.leaves(opt_state, is_leaf=_is_plateau)
           if _is_plateau(x)]
  return found[0] if found else None


def lr_scale(opt_state) -> jax.Array:
  """The plateau scale on the scheduled learning rate (1.0 if none)."""
  state = plateau_state(opt_state)
  return jnp.ones([], jnp.float32) if state is None else state.scale


# --------------------------------------------------------------------------
# Clipping.


class _Clip(NamedTuple):
  make: Callable[[ml_collections.ConfigDict],
                 optax.GradientTransformation | None]
  fired: Callable[[list[jax.Array], ml_collections.ConfigDict], jax.Array]


def _global_norm_fired(leaves, c):
  # optax scales unless norm < threshold; mirror its test exactly.
  return jnp.logical_not(optax.tree.norm(leaves) < c.clip_norm)


def _value_fired(leaves, c):
  return jnp.any(jnp.stack([jnp.any(jnp.abs(g) > c.clip_value)
                            for g in leaves]))


CLIPS: dict[str, _Clip] = {
    "global_norm": _Clip(
        lambda c: (optax.clip_by_global_norm(c.clip_norm)
                   if c.clip_norm > 0 else None),
        _global_norm_fired),
    "value": _Clip(
        lambda c: optax.clip(c.clip_value) if c.clip_value > 0 else None,
        _value_fired),
}


def _clip_threshold(c) -> float:
  return c.clip_norm if c.clip == "global_norm" else c.clip_value


def create_clip(c: ml_collections.ConfigDict
                ) -> optax.GradientTransformation | None:
  """The clipping transform of c.clip, or None when its threshold is 0."""
  return lookup(CLIPS, c.clip, "clip").make(c)


def clip_fired(grads: Params, c: ml_collections.ConfigDict) -> jax.Array:
  """bool scalar: whether the optimizer's clipping changes these gradients.

  Frozen parameters are left out, as they are in the optimizer's clipping.
  """
  clip = lookup(CLIPS, c.clip, "clip")
  if _clip_threshold(c) <= 0:
    return jnp.zeros([], bool)
  frozen = (path_mask(c.freeze, "freeze")(grads) if c.freeze
            else jax.tree.map(lambda _: False, grads))
  leaves = [g for g, f in zip(jax.tree.leaves(grads), jax.tree.leaves(frozen))
            if not f]
  if not leaves:
    return jnp.zeros([], bool)
  return clip.fired(leaves, c)


# --------------------------------------------------------------------------
# Freezing and the whole chain.


def freeze(tx: optax.GradientTransformation,
           patterns: str | Sequence[str]
           ) -> optax.GradientTransformationExtraArgs:
  """`tx` for the parameters no regex matches; zero updates, no state, for
  the rest. init raises a UserError if a regex matches no parameter."""
  frozen = path_mask(patterns, "freeze")
  labels = lambda t: jax.tree.map(lambda f: "frozen" if f else "trainable",
                                  frozen(t))
  inner = optax.partition({"trainable": tx, "frozen": optax.set_to_zero()},
                          labels)

  def init_fn(params):
    unmatched = _unmatched(patterns, "freeze", params)
    if unmatched:
      raise UserError(
          f"config.optim.freeze: {', '.join(map(repr, unmatched))} matches "
          f"no parameter. Parameters: {', '.join(param_paths(params))}.")
    return inner.init(params)
  return optax.GradientTransformationExtraArgs(init_fn, inner.update)


def create_optimizer(c: ml_collections.ConfigDict, total_steps: int,
                     steps_per_epoch: int | None = None
                     ) -> optax.GradientTransformationExtraArgs:
  """`config.optim` -> clip -> optimizer -> plateau scale -> freeze ->
  weight average.

  The result accepts `update(grads, state, params, token_ids=...)` whatever
  the optimizer; only sparse_adam reads token_ids.
  """
  make = lookup(OPTIMIZERS, c.name, "optimizer")
  parts = []
  clip = create_clip(c)
  if clip is not None:
    parts.append(clip)
  parts.append(make(c, create_schedule(c, total_steps, steps_per_epoch)))
  if c.schedule == "reduce_on_plateau":
    parts.append(scale_by_plateau())
  # A lone part is not re-wrapped, so plain adam's state has optax's layout.
  tx = parts[0] if len(parts) == 1 else optax.chain(*parts)
  if c.freeze:
    tx = freeze(tx, c.freeze)
  if c.ema_decay:
    tx = optax.chain(tx, average_params(c.ema_decay))
  return optax.with_extra_args_support(tx)
