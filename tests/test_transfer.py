"""initialize_from: parameters copied by path and shape, vocabulary remapped."""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import checkpoint
from rnnlab import models
from rnnlab import rundir
from rnnlab import train
from rnnlab import transfer
from rnnlab.data import text
from rnnlab.errors import CheckpointError, UserError
from tests.helpers import tiny_lm_config

# B drops "z", "Z" and ";" from A and adds "!", "0", "1" and "@".
A_TEXT = ("the quick brown fox jumps over the lazy dog.\n"
          "JACKDAWS LOVE MY BIG SPHINX OF QUARTZ; pack my box.\n") * 60
B_TEXT = A_TEXT.replace("z", "0").replace("Z", "1").replace(";", "!") + "@"
NEW, DROPPED = ["!", "0", "1", "@"], [";", "Z", "z"]  # in vocabulary order
VOCAB_PARAMS = {"embed/embedding", "readout/kernel", "readout/bias"}
TOKENS = (jnp.zeros((1, 1), jnp.int32),)


# Five steps on a small corpus file, checkpointed and evaluated at the end.
SHORT_RUN = dict(train__steps=5, train__checkpoint_every=5,
                 train__eval_every=5, train__log_every=5,
                 eval__num_streams=4, eval__seq_len=16)


def _flat(params) -> dict[str, np.ndarray]:
  leaves, _ = jax.tree_util.tree_flatten_with_path(params)
  return {"/".join(k.key for k in path): np.asarray(leaf)
          for path, leaf in leaves}


def _fresh(model_config, vocab, seed=7):
  model = models.create_model(model_config, vocab_size=len(vocab))
  return train.init_params(model, TOKENS, seed)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
  """One tiny GRU run on corpus A: (workdir, its config, vocab, params)."""
  root = tmp_path_factory.mktemp("transfer")
  (root / "a.txt").write_text(A_TEXT, encoding="utf-8")
  workdir = root / "source"
  config = tiny_lm_config(text__path=str(root / "a.txt"), **SHORT_RUN)
  train.train_and_evaluate(config, workdir)
  vocab = text.Vocab.load(workdir / "vocab.json")
  model = models.create_model(config.model, vocab_size=len(vocab))
  step, params = rundir.restore_params(model, TOKENS, workdir)
  assert step == 5
  return workdir, config, vocab, _flat(params)


@pytest.fixture(scope="module")
def vocab_b():
  vocab = text.Vocab.from_text(B_TEXT)
  assert vocab.unknown(A_TEXT) == DROPPED
  assert text.Vocab.from_text(A_TEXT).unknown(B_TEXT) == NEW
  return vocab


@pytest.fixture(scope="module")
def same_model(source, vocab_b):
  """The source's architecture on corpus B's vocabulary, initialised from it."""
  workdir, config, _, _ = source
  fresh = _fresh(config.model, vocab_b)
  params, report = transfer.initialize_from(fresh, workdir, vocab=vocab_b)
  return fresh, params, report


def _rows(vocab_b, vocab_a):
  """(target ids, source ids) of the shared chars; target ids of new ones."""
  a_ids = {c: i for i, c in enumerate(vocab_a.chars)}
  shared = [(i, a_ids[c]) for i, c in enumerate(vocab_b.chars) if c in a_ids]
  new = [vocab_b.chars.index(c) for c in NEW]
  return np.array([t for t, _ in shared]), np.array([s for _, s in shared]), new


def test_shared_chars_take_source_rows_new_chars_stay_fresh(
    source, vocab_b, same_model):
  _, _, vocab_a, src = source
  fresh, params, _ = same_model
  fresh, out = _flat(fresh), _flat(params)
  tgt_ids, src_ids, new_ids = _rows(vocab_b, vocab_a)
  assert len(tgt_ids) == len(vocab_b) - len(NEW)
  emb, kernel, bias = (out[p] for p in
                       ("embed/embedding", "readout/kernel", "readout/bias"))
  np.testing.assert_array_equal(emb[tgt_ids],
                                src["embed/embedding"][src_ids])
  np.testing.assert_array_equal(kernel[:, tgt_ids],
                                src["readout/kernel"][:, src_ids])
  np.testing.assert_array_equal(bias[tgt_ids], src["readout/bias"][src_ids])
  np.testing.assert_array_equal(emb[new_ids], fresh["embed/embedding"][new_ids])
  np.testing.assert_array_equal(kernel[:, new_ids],
                                fresh["readout/kernel"][:, new_ids])
  np.testing.assert_array_equal(bias[new_ids], fresh["readout/bias"][new_ids])
  # The fresh rows differ from the source's, so the checks above can fail.
  assert not np.allclose(fresh["embed/embedding"][tgt_ids],
                         src["embed/embedding"][src_ids])
  # A character that moved: "a" comes after the new "!", "0", "1", "@" in B.
  a_b, a_a = vocab_b.chars.index("a"), vocab_a.chars.index("a")
  assert a_b != a_a
  np.testing.assert_array_equal(emb[a_b], src["embed/embedding"][a_a])


def test_recurrent_weights_equal_source(source, same_model):
  _, _, _, src = source
  fresh, params, _ = same_model
  assert jax.tree.structure(params) == jax.tree.structure(fresh)
  out, fresh_flat = _flat(params), _flat(fresh)
  rnn = [p for p in out if p.startswith("rnn/")]
  assert len(rnn) == 8  # 2 GRU layers x 4 leaves
  for path in rnn:
    np.testing.assert_array_equal(out[path], src[path], err_msg=path)
    assert not np.allclose(fresh_flat[path], src[path]), path
  for new, old in zip(jax.tree.leaves(params), jax.tree.leaves(fresh)):
    assert isinstance(new, jax.Array)
    assert new.dtype == old.dtype and new.sharding == old.sharding


def test_report_counts(source, vocab_b, same_model):
  workdir, _, vocab_a, src = source
  _, _, report = same_model
  assert report.step == 5 and report.source == str(workdir.absolute())
  assert sorted(report.loaded) == sorted(src)
  assert report.mismatched == report.missing == report.unused == []
  v = report.vocab
  assert (v.source_size, v.target_size) == (len(vocab_a), len(vocab_b))
  assert v.remapped == len(vocab_b) - 4 == len(vocab_a) - 3
  assert (v.new, v.new_chars, v.dropped, v.dropped_chars) == (
      4, NEW, 3, DROPPED)
  assert set(v.params) == VOCAB_PARAMS
  saved = json.loads(report.to_json())
  assert saved["vocab"]["new_chars"] == NEW and saved["vocab"]["dropped"] == 3
  assert saved["step"] == 5 and len(saved["loaded"]) == 11
  summary = report.summary()
  assert "11 of 11 parameters loaded (3 remapped by character)" in summary
  assert f"{v.remapped} remapped, 4 new (fresh rows): '!01@', 3 dropped" in (
      summary)


def test_other_hidden_size_reports_mismatches_keeps_fresh(source, vocab_b):
  workdir, config, vocab_a, src = source
  model_config = config.model.copy_and_resolve_references()
  model_config.hidden_size = 48
  fresh = _fresh(model_config, vocab_b)
  params, report = transfer.initialize_from(fresh, workdir, vocab=vocab_b)
  fresh, out = _flat(fresh), _flat(params)
  mismatched = {m.path: m for m in report.mismatched}
  assert set(mismatched) == {p for p in src if p.startswith("rnn/")} | {
      "readout/kernel"}
  m = mismatched["rnn/layers_0/hidden_proj/kernel"]
  assert (m.source_shape, m.target_shape) == ((32, 96), (48, 144))
  m = mismatched["readout/kernel"]
  assert (m.source_shape, m.target_shape) == ((32, len(vocab_a)),
                                              (48, len(vocab_b)))
  for path in mismatched:
    np.testing.assert_array_equal(out[path], fresh[path], err_msg=path)
  # The embedding (E=16) and the bias have no hidden axis: still remapped.
  assert sorted(report.loaded) == ["embed/embedding", "readout/bias"]
  assert sorted(report.vocab.params) == ["embed/embedding", "readout/bias"]
  assert report.missing == report.unused == []
  assert "9 mismatched" in report.summary()
  assert "(32, 96) target (48, 144)" in report.summary()


def test_attention_lm_target_keeps_its_new_layers_fresh(source, vocab_b):
  workdir, config, _, src = source
  model_config = config.model.copy_and_resolve_references()
  model_config.name, model_config.attention_window = "attention_lm", 8
  fresh = _fresh(model_config, vocab_b)
  params, report = transfer.initialize_from(fresh, workdir, vocab=vocab_b)
  fresh, out = _flat(fresh), _flat(params)
  assert report.missing and all(p.startswith(("attend/", "combine/"))
                                for p in report.missing)
  assert set(report.missing) == set(fresh) - set(src)
  assert sorted(report.loaded) == sorted(src)
  assert set(report.vocab.params) == VOCAB_PARAMS
  for path in report.missing:
    np.testing.assert_array_equal(out[path], fresh[path], err_msg=path)
  np.testing.assert_array_equal(out["rnn/layers_1/hidden_proj/kernel"],
                                src["rnn/layers_1/hidden_proj/kernel"])


def test_one_hot_input_rows_remapped_and_cast(tmp_path, vocab_b):
  """A one-hot LM's first-layer input rows are token-indexed; floats are
  copied in the target's dtype. The source checkpoint is written directly."""
  vocab_a = text.Vocab.from_text(A_TEXT)
  model_config = tiny_lm_config("lstm").model
  model_config.embedding = "one_hot"
  source_params = _fresh(model_config, vocab_a, seed=1)
  ckpt = checkpoint.Checkpointer(tmp_path / "checkpoints")
  ckpt.save(3, source_params, {"count": jnp.zeros((), jnp.int32)}, {"step": 3})
  ckpt.close()
  vocab_a.save(tmp_path / "vocab.json")
  src = _flat(source_params)

  model_config.param_dtype = "bfloat16"
  fresh = _fresh(model_config, vocab_b)
  params, report = transfer.initialize_from(fresh, tmp_path, vocab=vocab_b)
  out, fresh = _flat(params), _flat(fresh)
  key = "rnn/layers_0/input_proj/kernel"
  assert set(report.vocab.params) == {key, "readout/kernel", "readout/bias"}
  assert sorted(report.loaded) == sorted(src) and report.step == 3
  assert out[key].dtype == jnp.bfloat16 and out[key].shape == (len(vocab_b),
                                                               128)
  tgt_ids, src_ids, new_ids = _rows(vocab_b, vocab_a)
  np.testing.assert_array_equal(out[key][tgt_ids],
                                src[key][src_ids].astype(jnp.bfloat16))
  np.testing.assert_array_equal(out[key][new_ids], fresh[key][new_ids])
  np.testing.assert_array_equal(
      out["rnn/layers_1/hidden_proj/kernel"],
      src["rnn/layers_1/hidden_proj/kernel"].astype(jnp.bfloat16))

  # A learned embedding's first layer reads E-vectors, not tokens.
  model_config.embedding, model_config.param_dtype = "learned", "float32"
  fresh = _fresh(model_config, vocab_b)
  _, report = transfer.initialize_from(fresh, tmp_path, vocab=vocab_b)
  assert report.missing == ["embed/embedding"]
  [m] = [m for m in report.mismatched if m.path == key]
  assert m.reason == "vocabulary-indexed in the source only"
  assert (m.source_shape, m.target_shape) == ((len(vocab_a), 128), (16, 128))


def test_without_vocab_matches_by_shape_and_floats_only(source, vocab_b):
  workdir, config, vocab_a, src = source
  fresh = _fresh(config.model, vocab_b)
  params, report = transfer.initialize_from(fresh, workdir)
  assert report.vocab is None
  assert sorted(m.path for m in report.mismatched) == sorted(VOCAB_PARAMS)
  assert sorted(report.loaded) == sorted(set(src) - VOCAB_PARAMS)
  np.testing.assert_array_equal(_flat(params)["readout/bias"],
                                _flat(fresh)["readout/bias"])

  # Only floats are copied: an integer leaf of the right shape is not.
  fresh["rnn"]["layers_0"]["input_proj"]["bias"] = jnp.zeros((96,), jnp.int32)
  params, report = transfer.initialize_from(fresh, workdir, vocab=vocab_b)
  [m] = report.mismatched
  assert m.path == "rnn/layers_0/input_proj/bias" and "dtype" in m.reason
  assert params["rnn"]["layers_0"]["input_proj"]["bias"].dtype == jnp.int32
  assert not params["rnn"]["layers_0"]["input_proj"]["bias"].any()


def test_non_char_vocab_is_not_remapped(source):
  workdir, config, vocab_a, _ = source

  class OtherVocab:
    chars = vocab_a.chars

  fresh = _fresh(config.model, vocab_a)
  _, report = transfer.initialize_from(fresh, workdir, vocab=OtherVocab())
  assert report.vocab is None and "OtherVocab" in report.notes[0]
  assert len(report.loaded) == 11  # same vocabulary size: matched by shape


def test_missing_source_raises_checkpoint_error(tmp_path, source):
  _, config, vocab_a, _ = source
  fresh = _fresh(config.model, vocab_a)
  missing = tmp_path / "no_such_run"
  with pytest.raises(CheckpointError, match="no_such_run.*not a directory"):
    transfer.initialize_from(fresh, missing, vocab=vocab_a)
  with pytest.raises(CheckpointError, match="No checkpoint in .*checkpoints"):
    transfer.initialize_from(fresh, tmp_path, vocab=vocab_a)
  (tmp_path / "checkpoints").mkdir()
  with pytest.raises(CheckpointError, match="No checkpoint in .*checkpoints"):
    transfer.initialize_from(fresh, tmp_path, vocab=vocab_a)


def test_nothing_matched_raises_user_error(source):
  workdir, _, _, _ = source
  params = {"encoder": {"kernel": jnp.zeros((4, 4))}}
  with pytest.raises(UserError, match="no parameter matches") as e:
    transfer.initialize_from(params, workdir)
  assert "embed/embedding (" in str(e.value)  # source listing
  assert "encoder/kernel (4, 4)" in str(e.value)  # target listing


def test_fine_tune_run_with_frozen_layers(source, tmp_path):
  """config.init_from + optim.freeze through the trainer: frozen layers end
  the run equal to the source, the rest trains on the new corpus."""
  workdir, _, vocab_a, source_params = source
  (tmp_path / "b.txt").write_text(B_TEXT, encoding="utf-8")
  target = tmp_path / "target"
  config = tiny_lm_config(text__path=str(tmp_path / "b.txt"), **SHORT_RUN,
                          init_from=str(workdir),
                          optim__freeze=("rnn/layers_0/",))
  train.train_and_evaluate(config, target)
  report = json.loads((target / "init_from.json").read_text())
  assert report["vocab"]["remapped"] == len(vocab_a) - len(DROPPED)
  vocab_b = text.Vocab.load(target / "vocab.json")
  model = models.create_model(config.model, vocab_size=len(vocab_b))
  _, tuned = rundir.restore_params(model, TOKENS, target)
  tuned = _flat(tuned)
  for path, value in tuned.items():
    if path.startswith("rnn/layers_0/"):
      np.testing.assert_array_equal(value, source_params[path], err_msg=path)
    elif path.startswith("rnn/layers_1/"):
      assert not np.array_equal(value, source_params[path]), path
  # A restart resumes the fine-tuning run; it does not re-initialise.
  again = train.train_and_evaluate(config, target)
  assert again["step"] == 5
