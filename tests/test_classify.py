"""Sequence classification: JapaneseVowels data, masking, TFDS text under
mock_data, vocabulary JSON, and tiny training runs."""
from __future__ import annotations

import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from rnnlab import base_config
from rnnlab import config_check
from rnnlab import metrics
from rnnlab import recipes
from rnnlab import rundir
from rnnlab import tasks
from rnnlab import train
from rnnlab.data import classification as data
from rnnlab.data import tfds_source
from rnnlab.errors import DataError, UserError
from rnnlab.models import classifier
from tests.helpers import tiny_config
from rnnlab.tasks import classify


@pytest.fixture(scope="module")
def raw_vowels():
  return data.load_japanese_vowels()


@pytest.fixture(scope="module")
def vowels(raw_vowels):
  del raw_vowels  # loaded (and cached by sktime's import) once
  return data.japanese_vowels_dataset(val_fraction=0.2, seed=0)


def test_japanese_vowels_loads(raw_vowels, vowels):
  (train_x, train_y), (test_x, test_y) = raw_vowels["train"], raw_vowels["test"]
  assert (len(train_x), len(test_x)) == (270, 370)
  assert {x.shape[1] for x in train_x + test_x} == {12}
  lengths = [len(x) for x in train_x + test_x]
  assert (min(lengths), max(lengths)) == (7, 29)
  assert len(train_x[0]) == 20  # the first utterance, as sktime reads it
  assert set(train_y) == set(test_y) == {str(i) for i in range(1, 10)}
  assert vowels.classes == [str(i) for i in range(1, 10)]
  assert {k: len(v) for k, v in vowels.splits.items()} == {
      "train": 216, "val": 54, "test": 370}
  assert vowels.num_features == 12
  test = vowels.splits["test"]
  assert test.inputs.shape == (370, 29, 12)
  # Padding is zero after each length.
  assert not np.any(test.inputs[np.arange(29)[None] >= test.lengths[:, None]])


def test_validation_is_carved_from_train_stratified():
  labels = np.repeat(np.arange(9), 30)
  kept, held = data.stratified_split(labels, 0.2, seed=0)
  assert not set(kept) & set(held)
  assert sorted(np.concatenate([kept, held])) == list(range(270))
  assert np.all(np.bincount(labels[held]) == 6)
  again, _ = data.stratified_split(labels, 0.2, seed=0)
  other, _ = data.stratified_split(labels, 0.2, seed=1)
  np.testing.assert_array_equal(kept, again)
  assert not np.array_equal(kept, other)
  with pytest.raises(UserError, match="val_fraction"):
    data.stratified_split(labels, 0.0, seed=0)


def test_normalisation_uses_the_training_part_only(raw_vowels, vowels):
  seqs, labels = raw_vowels["train"]
  ids = np.array([int(s) - 1 for s in labels])
  kept, held = data.stratified_split(ids, 0.2, seed=0)
  frames = np.concatenate([seqs[i] for i in kept])
  np.testing.assert_allclose(vowels.feature_stats.mean, frames.mean(0),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(vowels.feature_stats.std, frames.std(0),
                             rtol=1e-5)
  with_val = np.concatenate([frames] + [seqs[i] for i in held])
  assert not np.allclose(vowels.feature_stats.mean, with_val.mean(0))
  # Train frames come out standardised; the others with the same shift.
  train = vowels.splits["train"]
  valid = np.arange(train.inputs.shape[1])[None] < train.lengths[:, None]
  np.testing.assert_allclose(train.inputs[valid].mean(0), 0, atol=1e-5)
  np.testing.assert_allclose(train.inputs[valid].std(0), 1, atol=1e-4)
  val = vowels.splits["val"]
  np.testing.assert_allclose(
      val.inputs[0, :val.lengths[0]],
      (seqs[held[0]] - vowels.feature_stats.mean) / vowels.feature_stats.std,
      rtol=1e-5, atol=1e-5)


def test_epoch_batches_cover_each_example_once_and_bucket_by_length():
  lengths = np.random.default_rng(0).integers(1, 200, 1000)
  plain = data.epoch_batches(lengths, 10, seed=0, epoch=3, bucket=False)
  bucketed = data.epoch_batches(lengths, 10, seed=0, epoch=3, bucket=True)
  for batches in (plain, bucketed):
    assert batches.shape == (100, 10) and len(set(batches.ravel())) == 1000
  spread = lambda b: np.mean(lengths[b].max(1) - lengths[b].min(1))
  assert spread(bucketed) < 0.2 * spread(plain)
  assert not np.array_equal(
      bucketed, data.epoch_batches(lengths, 10, seed=0, epoch=4, bucket=True))


def _model_config(cell, bidirectional, **overrides):
  c = base_config.get_config().model
  c.name, c.cell = "classifier", cell
  c.bidirectional = bidirectional
  c.hidden_size, c.num_layers, c.embed_dim = 8, 2, 6
  for key, value in overrides.items():
    c[key] = value
  return c


@pytest.mark.parametrize("cell,bidirectional,pooling,tokens,num_layers", [
    ("gru", True, "last", False, 2),
    ("lstm", True, "mean", True, 1),
    ("lstm", False, "last", False, 1),
    ("gru", False, "max", True, 1),
])
def test_more_padding_does_not_change_logits(cell, bidirectional, pooling,
                                             tokens, num_layers):
  c = _model_config(cell, bidirectional, layer_norm=True,
                    num_layers=num_layers)
  model = classifier.SequenceClassifier.from_config(
      c, num_classes=5, vocab_size=20 if tokens else 0, pooling=pooling)
  rng = np.random.default_rng(0)
  lengths = np.array([3, 7, 1, 5], np.int32)
  width, extra = 7, 6
  if tokens:
    inputs = rng.integers(1, 20, (4, width + extra)).astype(np.int32)
  else:
    inputs = rng.normal(size=(4, width + extra, 3)).astype(np.float32)
  params = model.init(jax.random.key(0), inputs[:, :width], lengths)
  apply = jax.jit(model.apply)
  short = apply(params, inputs[:, :width], lengths)
  # Longer padding, holding garbage rather than zeros.
  long = apply(params, inputs, lengths)
  np.testing.assert_allclose(short, long, rtol=1e-5, atol=1e-6)
  assert short.shape == (4, 5)


def test_word_dropout_replaces_tokens_by_unk_never_padding():
  rng = np.random.default_rng(0)
  tokens = rng.integers(2, 50, (64, 200)).astype(np.int32)
  tokens[:, 150:] = data.PAD_ID
  dropped = np.asarray(classifier.drop_words(
      jax.random.key(1), tokens, 0.25, data.UNK_ID, data.PAD_ID))
  changed = dropped != tokens
  assert not changed[:, 150:].any()
  assert (dropped[changed] == data.UNK_ID).all()
  assert abs(changed[:, :150].mean() - 0.25) < 0.01


def test_word_dropout_acts_in_training_only():
  c = _model_config("gru", True, dropout_rate=0.0)  # word dropout alone
  rng = np.random.default_rng(0)
  inputs = rng.integers(2, 20, (8, 12)).astype(np.int32)
  lengths = np.full((8,), 12, np.int32)
  plain, dropping = (classifier.SequenceClassifier.from_config(
      c, num_classes=3, vocab_size=20, word_dropout=rate)
      for rate in (0.0, 0.5))
  params = plain.init(jax.random.key(0), inputs, lengths)
  rngs = {"dropout": jax.random.key(2)}
  logits = {(rate, train): model.apply(params, inputs, lengths, train=train,
                                        rngs=rngs)
            for rate, model in ((0.0, plain), (0.5, dropping))
            for train in (False, True)}
  np.testing.assert_array_equal(logits[0.5, False], logits[0.0, False])
  np.testing.assert_array_equal(logits[0.0, True], logits[0.0, False])
  assert np.abs(logits[0.5, True] - logits[0.0, True]).max() > 1e-3


def test_ensemble_averages_its_members_probabilities():
  c = _model_config("gru", False, dropout_rate=0.3)
  fields = dict(num_classes=3, vocab_size=20, pooling="mean",
                word_dropout=0.2)
  ensemble = classifier.SequenceClassifier.from_config(c, ensemble_size=3,
                                                       **fields)
  single = classifier.SequenceClassifier.from_config(c, **fields)
  assert isinstance(ensemble, classifier.ClassifierEnsemble)
  rng = np.random.default_rng(0)
  inputs = rng.integers(2, 20, (5, 9)).astype(np.int32)
  lengths = np.array([9, 4, 1, 7, 2], np.int32)
  params = ensemble.init(jax.random.key(0), inputs, lengths)["params"]
  members = [jax.tree_util.tree_map(lambda p, m=m: p[m], params["member"])
             for m in range(3)]
  # Each member is initialised on its own: no two share an embedding.
  embeddings = [np.asarray(m["embed"]["embedding"]) for m in members]
  assert all(np.abs(embeddings[i] - embeddings[j]).max() > 1e-3
             for i in range(3) for j in range(i))
  # Evaluation: the log of the members' mean class probabilities.
  apply_single = jax.jit(single.apply)  # one compilation for 3 members
  probs = np.mean([jax.nn.softmax(apply_single({"params": m}, inputs,
                                               lengths)) for m in members], 0)
  np.testing.assert_allclose(
      np.exp(ensemble.apply({"params": params}, inputs, lengths)), probs,
      rtol=1e-5, atol=1e-7)
  # Training: one row of logits per member, each with its own dropout and
  # word-dropout masks (identical members still differ), and the loss is
  # the members' mean.
  same = jax.tree_util.tree_map(lambda p: jnp.broadcast_to(p[:1], p.shape),
                                params)
  rng_key = jax.random.key(1)
  train_logits = ensemble.apply({"params": same}, inputs, lengths,
                                train=True, rngs={"dropout": rng_key})
  assert train_logits.shape == (3, 5, 3)
  assert np.abs(train_logits[1] - train_logits[0]).max() > 1e-3
  batch = {"inputs": inputs, "lengths": lengths,
           "labels": np.array([0, 1, 2, 1, 0], np.int32)}
  loss, aux = classify.classify_loss(ensemble, same, batch, rng_key)
  nll = -np.take_along_axis(np.asarray(jax.nn.log_softmax(train_logits)),
                            batch["labels"][None, :, None], -1)
  np.testing.assert_allclose(loss, nll.mean(), rtol=1e-5)
  assert 0 <= aux["accuracy"] <= 1


def test_unknown_pooling_names_the_choices():
  with pytest.raises(UserError, match="'last', 'max', 'mean'"):
    classifier.SequenceClassifier.from_config(
        _model_config("gru", True), num_classes=2, pooling="first")
  c = tiny_config("gru_japanese_vowels", classify__pooling="first")
  with pytest.raises(UserError, match=r"Unknown pooling 'first' "
                     r"\(config.classify.pooling\)\. Valid choices: 'last', "
                     "'max', 'mean'"):
    config_check.validate(c)


def test_vocab_json_roundtrip_and_unknowns(tmp_path):
  texts = ["A good film, a GOOD one.", "bad film", "good"]
  vocab = data.TokenVocab.build(texts, "word", max_size=5)
  assert vocab.tokens == ["<pad>", "<unk>", "good", "a", "film"]
  np.testing.assert_array_equal(vocab.encode("Good bad film!", 10),
                                [2, 1, 4, 1])
  np.testing.assert_array_equal(vocab.encode("", 10), [data.UNK_ID])
  assert len(vocab.encode("good " * 50, 8)) == 8
  path = tmp_path / "v.json"
  metrics.write_json(path, vocab.to_dict())
  loaded = data.TokenVocab.from_dict(json.loads(path.read_text()))
  assert loaded == vocab and loaded.tokenization == "word"
  chars = data.TokenVocab.build(texts, "char", max_size=100)
  assert all(len(t) == 1 for t in chars.tokens[2:])
  assert chars != vocab
  with pytest.raises(UserError, match="'char'"):
    data.tokenize("x", "bpe")


def _tfds_config(tokenization, **overrides):
  c = recipes.text_config("glue/sst2", "runlocal", text_feature="sentence",
                           test_split="validation")
  c.classify.tokenization = tokenization
  c.classify.tfds_data_dir = "/nonexistent/tfds"  # never a real dataset
  c.train.progress_bar = False
  for dotted, value in overrides.items():
    section, key = dotted.split("__")
    c[section][key] = value
  return c


def _mock_tfds(num_examples=40):
  return tfds.testing.mock_data(num_examples=num_examples,
                                policy=tfds.testing.MockPolicy.USE_CODE)


@pytest.mark.parametrize("tokenization", ["word", "char"])
def test_tfds_text_loads_and_tokenises_under_mock_data(tokenization):
  c = _tfds_config(tokenization)
  with _mock_tfds():
    dataset = data.load_dataset(c.classify, seed=0)
  assert dataset.classes == ["negative", "positive"]
  sizes = {k: len(v) for k, v in dataset.splits.items()}
  assert sizes["val"] >= 2 and sizes["train"] + sizes["val"] == 40
  assert sizes["test"] == 40
  vocab = dataset.vocab
  assert vocab.tokens[:2] == ["<pad>", "<unk>"]
  assert vocab.tokenization == tokenization
  assert len(vocab) <= c.classify.vocab_size
  train = dataset.splits["train"]
  assert train.inputs.dtype == np.int32 and train.lengths.min() >= 1
  assert train.inputs.shape[1] <= c.classify.max_tokens
  if tokenization == "char":
    assert all(len(t) == 1 for t in vocab.tokens[2:])


def test_tfds_training_step_runs_and_metadata_must_match(tmp_path):
  c = _tfds_config("word")
  with _mock_tfds():
    task = tasks.create_task(c)
    state, schedule = train.create_train_state(task.model, task.init_inputs(),
                                               c, task.steps_per_epoch())
    step = train.make_train_step(task.loss_fn, schedule)
    state, metrics, _ = step(state, task.train_batch(0), jax.random.key(0))
    assert np.isfinite(float(metrics["loss"])) and int(state.step) == 1
    assert 0 <= task.evaluate(state.params, "test")["accuracy"] <= 1
    task.save_metadata(tmp_path)
    saved = json.loads((tmp_path / classify.METADATA_FILE).read_text())
    assert saved["vocab"] == task.dataset.vocab.to_dict()
    assert saved["classes"] == ["negative", "positive"]
    task.save_metadata(tmp_path)  # the same data: accepted on resume
    with pytest.raises(UserError, match="does not match this run's data"):
      tasks.create_task(_tfds_config("char")).save_metadata(tmp_path)


def test_tfds_download_fails_fast_offline(monkeypatch):
  monkeypatch.setenv("RNNLAB_OFFLINE", "1")
  t0 = time.perf_counter()
  with pytest.raises(DataError, match="RNNLAB_OFFLINE is set"):
    tfds_source.split_source("imdb_reviews", "train", "/nonexistent/tfds")
  # Without RNNLAB_OFFLINE, an unreachable host fails the quick check.
  monkeypatch.delenv("RNNLAB_OFFLINE")
  monkeypatch.setattr(tfds_source, "PROBE_HOST", ("127.0.0.1", 9))  # refused
  monkeypatch.setattr(tfds_source, "NETWORK_TIMEOUT_S", 2.0)
  with pytest.raises(DataError, match="(?s)cannot be downloaded.*Prepare it"):
    tfds_source.split_source("imdb_reviews", "train", "/nonexistent/tfds")
  assert time.perf_counter() - t0 < 10


def test_unlabelled_split_is_refused():
  c = _tfds_config("word")
  with _mock_tfds(), pytest.MonkeyPatch.context() as m:
    real = tfds_source.split_source
    m.setattr(tfds_source, "split_source", lambda *a: [
        {**ex, "label": np.array(-1)} for ex in real(*a)])
    with pytest.raises(DataError, match="unlabelled"):
      data.load_dataset(c.classify, seed=0)


@pytest.mark.parametrize("ensemble_size", [1, 2])
def test_japanese_vowels_training_lowers_the_loss(tmp_path, ensemble_size):
  c = recipes.japanese_vowels_config("runlocal")
  c.classify.ensemble_size = ensemble_size
  c.train.steps, c.train.eval_every, c.train.checkpoint_every = 30, 15, 15
  c.model.hidden_size = 16
  c.classify.pad_multiple = 32  # every batch 32 steps long: one compilation
  c.optim.learning_rate = 1e-2
  c.train.progress_bar = False
  task = tasks.create_task(c)
  params = train.init_params(task.model, task.init_inputs(), c.seed)
  before = task.evaluate(params, "val")["loss"]
  results = train.train_and_evaluate(c, tmp_path)
  after = results["eval"]["val"]["loss"]
  assert after < 0.8 * before, (before, after)
  best = json.loads((tmp_path / classify.BEST_EVAL_FILE).read_text())
  assert best["eval"]["test"]["examples"] == 370
  assert best["step"] == results["best"]["step"]
  # The best checkpoint holds every member, stacked [ensemble_size, ...].
  _, best_params = rundir.restore_best_params(
      task.model, task.init_inputs(), tmp_path)
  kernel = best_params["member"]["readout"]["kernel"] if ensemble_size > 1 \
      else best_params["readout"]["kernel"][None]
  assert kernel.shape[0] == ensemble_size
  # The trainer's batches: padded to a multiple of classify.pad_multiple,
  # a pure function of (seed, step).
  batch = task.train_batch(7)
  assert batch["inputs"].shape[1] % c.classify.pad_multiple == 0
  np.testing.assert_array_equal(batch["labels"],
                                tasks.create_task(c).train_batch(7)["labels"])


def test_config_args():
  c = recipes.japanese_vowels_config("cell=lstm,pooling=mean")
  assert (c.model.cell, c.classify.pooling) == ("lstm", "mean")
  with pytest.raises(UserError, match="Valid keys: cell, pooling"):
    recipes.japanese_vowels_config("layers=2")
  with pytest.raises(UserError, match="Unknown pooling 'avg'"):
    recipes.japanese_vowels_config("pooling=avg")
  with pytest.raises(UserError, match="model.name='classifier'"):
    c.model.name = "rnn_lm"
    tasks.create_task(c)
