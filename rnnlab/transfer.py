"""Initialise a run from another run's newest checkpoint (`config.init_from`).

The source's parameters are read from Orbax without knowing its model (the
template comes from the checkpoint's own metadata), then matched to the new
run's parameters by "/"-joined path and shape. Floating-point matches are
copied, cast to the target's dtype; everything else keeps its fresh value.

When both runs have character vocabularies, the parameters indexed by token
id are remapped by character instead of by index: a char LM trained on one
corpus can start a run on a corpus whose character set differs a little.
Characters new to the target keep their freshly initialised rows.

    params, report = transfer.initialize_from(state.params, config.init_from,
                                              vocab=task.vocab)
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from rnnlab import rundir
from rnnlab.data import text
from rnnlab.errors import CheckpointError, UserError

# Token-indexed parameters of rnnlab's LMs (RecurrentLM, AttentionLM): path ->
# vocabulary axis. A leaf counts only if that axis has the vocabulary's size.
VOCAB_AXES = {"embed/embedding": 0, "readout/kernel": -1, "readout/bias": -1}
# embedding="one_hot" feeds one-hot vectors to the first layer, so row i of
# its input kernel is token i's weights; used only when there is no embedding.
ONE_HOT_INPUT = "rnn/layers_0/input_proj/kernel"

_LIST_LIMIT = 10  # entries of each list shown by `summary()`


@dataclasses.dataclass
class Mismatch:
  """A parameter present in both runs but not copied (kept fresh)."""
  path: str
  source_shape: tuple[int, ...]
  target_shape: tuple[int, ...]
  reason: str = "shape"


@dataclasses.dataclass
class VocabRemap:
  """How the token-indexed parameters were remapped by character."""
  source_size: int
  target_size: int
  remapped: int                # characters in both: source rows copied
  new_chars: list[str]         # target only: fresh rows kept
  dropped_chars: list[str]     # source only: rows not used
  params: list[str]            # parameters copied row by row

  @property
  def new(self) -> int:
    return len(self.new_chars)

  @property
  def dropped(self) -> int:
    return len(self.dropped_chars)


@dataclasses.dataclass
class TransferReport:
  """What `initialize_from` copied, skipped and kept fresh."""
  source: str                  # the source workdir
  step: int                    # its checkpoint step that was read
  loaded: list[str]            # copied (including the remapped ones)
  mismatched: list[Mismatch]   # in both, not copied
  missing: list[str]           # target only: kept fresh
  unused: list[str]            # source only
  vocab: VocabRemap | None = None  # None: nothing remapped by character
  notes: list[str] = dataclasses.field(default_factory=list)

  def to_dict(self) -> dict[str, Any]:
    d = dataclasses.asdict(self)
    if self.vocab is not None:
      d["vocab"].update(new=self.vocab.new, dropped=self.vocab.dropped)
    return d

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

  def summary(self) -> str:
    """A few lines for the training log; `to_json()` has every entry."""
    total = len(self.loaded) + len(self.mismatched) + len(self.missing)
    remapped = len(self.vocab.params) if self.vocab else 0
    lines = [
        f"Initialised from {self.source} (step {self.step}): "
        f"{len(self.loaded)} of {total} parameters loaded ({remapped} "
        f"remapped by character), {len(self.mismatched)} mismatched and "
        f"{len(self.missing)} missing in source (both kept fresh), "
        f"{len(self.unused)} unused source entries."]
    if self.vocab:
      v = self.vocab
      lines.append(
          f"  Vocabulary {v.source_size} -> {v.target_size} characters: "
          f"{v.remapped} remapped, {v.new} new (fresh rows)"
          f"{': ' + repr(''.join(v.new_chars)) if v.new else ''}, "
          f"{v.dropped} dropped.")
    lines += [f"  Note: {n}" for n in self.notes]
    lines += _capped("Not copied (kept fresh)", [
        f"{m.path} source {m.source_shape} target {m.target_shape} "
        f"({m.reason})" for m in self.mismatched])
    lines += _capped("Missing in source (kept fresh)", self.missing)
    lines += _capped("Unused source entry", self.unused)
    return "\n".join(lines)


def _capped(label: str, items: list[str]) -> list[str]:
  lines = [f"  {label}: {item}" for item in items[:_LIST_LIMIT]]
  if len(items) > _LIST_LIMIT:
    lines.append(f"  ... and {len(items) - _LIST_LIMIT} more {label.lower()} "
                 "entries.")
  return lines


def initialize_from(params, source_workdir: str | os.PathLike,
                    vocab: Any = None) -> tuple[Any, TransferReport]:
  """Copies the newest checkpoint of `source_workdir` into `params`.

  Args:
    params: the new run's freshly initialised parameter pytree.
    source_workdir: a run directory holding checkpoints/<step>/params.
    vocab: the new run's `text.Vocab`; with the source's vocab.json, the
      token-indexed parameters are remapped by character. Other vocabularies
      (or None) match those parameters by shape like the rest.

  Returns:
    (params with the same structure, dtypes and placement as `params`, the
    report of what was copied).

  Raises:
    CheckpointError: the source has no readable checkpoint.
    UserError: not a single parameter could be copied.
  """
  workdir = pathlib.Path(source_workdir).expanduser().absolute()
  step, source = _read_params(workdir)
  leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
  target = {_path_str(path): leaf for path, leaf in leaves}

  notes = []
  vocabs = _vocabularies(workdir, vocab, notes)
  src_axes = tgt_axes = {}
  remap = None
  if vocabs:
    src_vocab, tgt_vocab = vocabs
    src_axes = _vocab_axes(source, len(src_vocab))
    tgt_axes = _vocab_axes(target, len(tgt_vocab))
    in_source = set(src_vocab.chars)
    in_target = set(tgt_vocab.chars)
    remap = VocabRemap(
        source_size=len(src_vocab), target_size=len(tgt_vocab),
        remapped=len(in_source & in_target),
        new_chars=[c for c in tgt_vocab.chars if c not in in_source],
        dropped_chars=[c for c in src_vocab.chars if c not in in_target],
        params=[])

  out, loaded, mismatched, missing = {}, [], [], []
  for path, fresh in target.items():
    out[path] = fresh
    if path not in source:
      missing.append(path)
      continue
    src = source[path]
    mismatch = Mismatch(path, tuple(src.shape), tuple(np.shape(fresh)))
    if not (jnp.issubdtype(src.dtype, jnp.floating) and
            jnp.issubdtype(fresh.dtype, jnp.floating)):
      mismatch.reason = f"dtype {src.dtype} -> {fresh.dtype}: floats only"
      mismatched.append(mismatch)
    elif path in src_axes and path in tgt_axes:
      value = _remap(src, src_axes[path], fresh, tgt_axes[path], *vocabs)
      if value is None:
        mismatched.append(mismatch)
      else:
        out[path] = _place(value, fresh)
        loaded.append(path)
        remap.params.append(path)
    elif path in src_axes or path in tgt_axes:
      side = "source" if path in src_axes else "target"
      mismatch.reason = f"vocabulary-indexed in the {side} only"
      mismatched.append(mismatch)
    elif mismatch.source_shape == mismatch.target_shape:
      out[path] = _place(np.asarray(src).astype(fresh.dtype), fresh)
      loaded.append(path)
    else:
      mismatched.append(mismatch)
  if not loaded:
    raise UserError(
        f"config.init_from={str(source_workdir)!r}: no parameter matches "
        "this model by path and shape, so nothing would be loaded.\n"
        f"  source (step {step}):\n{_listing(source)}\n"
        f"  this model:\n{_listing(target)}")
  unused = sorted(set(source) - set(target))
  report = TransferReport(
      source=str(workdir), step=step, loaded=loaded, mismatched=mismatched,
      missing=missing, unused=unused, vocab=remap, notes=notes)
  return jax.tree_util.tree_unflatten(treedef, list(out.values())), report


def _read_params(workdir: pathlib.Path) -> tuple[int, dict[str, np.ndarray]]:
  """(step, {path: array}) of the newest checkpoint, as host numpy arrays.

  The restore template is built from the checkpoint's metadata with numpy
  leaves, so neither the source's model nor the devices it was saved from
  (whose sharding a template-free restore would insist on) are needed.
  """
  if not workdir.is_dir():
    raise CheckpointError(
        f"config.init_from={str(workdir)!r} is not a directory. Give the "
        "workdir of a trained run (it holds config.json and checkpoints/), "
        "or '' to start from a fresh initialisation.")
  ckpt_dir = workdir / rundir.CHECKPOINT_DIR
  if not ckpt_dir.is_dir():
    raise CheckpointError(
        f"No checkpoint in {workdir} (expected {ckpt_dir}): config.init_from "
        "must name a run that has saved at least one checkpoint.")
  manager = ocp.CheckpointManager(
      ckpt_dir, options=ocp.CheckpointManagerOptions(read_only=True),
      item_names=("params",),
      item_handlers={"params": ocp.StandardCheckpointHandler()})
  try:
    step = manager.latest_step()
    if step is None:
      raise CheckpointError(
          f"No checkpoint in {ckpt_dir}: config.init_from must name a run "
          "that has saved at least one checkpoint.")
    try:
      metadata = manager.item_metadata(step)["params"]
      template = jax.tree.map(lambda m: np.empty(m.shape, m.dtype),
                              getattr(metadata, "tree", metadata))
      restored = manager.restore(step, args=ocp.args.Composite(
          params=ocp.args.StandardRestore(template)))["params"]
    except (ValueError, KeyError, TypeError, AttributeError, OSError) as e:
      raise CheckpointError(
          f"Cannot read the parameters of {ckpt_dir / str(step)}: {e}") from e
  finally:
    manager.close()
  leaves, _ = jax.tree_util.tree_flatten_with_path(restored)
  return step, {_path_str(path): np.asarray(leaf) for path, leaf in leaves}


def _vocabularies(workdir: pathlib.Path, vocab, notes: list[str]
                  ) -> tuple[text.Vocab, text.Vocab] | None:
  """(source, target) character vocabularies, or None with a note why not."""
  if vocab is None:
    return None
  if not isinstance(vocab, text.Vocab):
    notes.append(f"{type(vocab).__name__} vocabularies are not remapped by "
                 "character (char LMs only); token-indexed parameters were "
                 "matched by shape.")
    return None
  path = workdir / rundir.VOCAB_FILE
  if not path.is_file():
    notes.append(f"No {path}: token-indexed parameters were matched by shape, "
                 "not by character.")
    return None
  try:
    saved = json.loads(path.read_text(encoding="utf-8"))
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise CheckpointError(f"Cannot read {path}: {e}") from e
  if not (isinstance(saved, dict) and saved.get("type") == "char"):
    kind = saved.get("type") if isinstance(saved, dict) else None
    notes.append(f"{path} is a {kind!r} vocabulary, not a character LM's "
                 "('char'): token-indexed parameters were matched by shape.")
    return None
  return text.Vocab.from_json(json.dumps(saved)), vocab


def _vocab_axes(tree: dict[str, Any], vocab_size: int) -> dict[str, int]:
  """{path: vocabulary axis} of the token-indexed leaves of a flat tree."""
  candidates = dict(VOCAB_AXES)
  if "embed/embedding" not in tree:
    candidates[ONE_HOT_INPUT] = 0
  axes = {}
  for path, axis in candidates.items():
    shape = np.shape(tree[path]) if path in tree else ()
    if shape and shape[axis] == vocab_size:
      axes[path] = axis % len(shape)
  return axes


def _remap(src: np.ndarray, src_axis: int, fresh, tgt_axis: int,
           src_vocab: text.Vocab, tgt_vocab: text.Vocab) -> np.ndarray | None:
  """`fresh` with the rows of shared characters taken from `src`, or None
  when the shapes differ on another axis than the vocabulary's."""
  src_rest = np.delete(np.shape(src), src_axis).tolist()
  tgt_rest = np.delete(np.shape(fresh), tgt_axis).tolist()
  if src_axis != tgt_axis or src_rest != tgt_rest:
    return None
  src_ids = {c: i for i, c in enumerate(src_vocab.chars)}
  pairs = [(i, src_ids[c]) for i, c in enumerate(tgt_vocab.chars)
           if c in src_ids]
  out = np.array(fresh)  # a host copy in the target's dtype
  if pairs:
    tgt_idx, src_idx = (np.array(p) for p in zip(*pairs))
    # moveaxis returns views, so this writes the rows of `out` in place.
    np.moveaxis(out, tgt_axis, 0)[tgt_idx] = (
        np.moveaxis(np.asarray(src), src_axis, 0)[src_idx].astype(out.dtype))
  return out


def _place(value: np.ndarray, like):
  """`value` where `like` lives: same device(s) and sharding, or host."""
  if isinstance(like, jax.Array):
    return jax.device_put(value, like.sharding)
  return value


def _path_str(path) -> str:
  parts = []
  for key in path:
    for attr in ("key", "name", "idx"):
      if hasattr(key, attr):
        parts.append(str(getattr(key, attr)))
        break
    else:
      parts.append(str(key))
  return "/".join(parts)


def _listing(tree: dict[str, Any], limit: int = 8) -> str:
  items = [f"    {path} {tuple(np.shape(value))}"
           for path, value in list(tree.items())[:limit]]
  if len(tree) > limit:
    items.append(f"    ... and {len(tree) - limit} more")
  return "\n".join(items) or "    (no parameters)"
