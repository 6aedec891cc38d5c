"""Seq2seq: generated data and splits, the encoder-decoder, decoding."""
from __future__ import annotations

import datetime

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import base_config
from rnnlab import config_check
from rnnlab import decode
from rnnlab import recipes
from rnnlab.data import seq2seq as data
from rnnlab.errors import UserError
from rnnlab.models import seq2seq as seq2seq_model
from rnnlab.tasks import seq2seq as task_lib
from tests.helpers import assert_float32_close
from tests.helpers import float32_atol


def config(problem="addition", attention="additive", **model):
  c = base_config.get_config()
  c.task, c.model.name = "seq2seq", "seq2seq"
  c.seq2seq.problem = problem
  c.seq2seq.num_val, c.seq2seq.num_test = 30, 60
  c.seq2seq.attention = attention
  c.model.update(dict(hidden_size=16, embed_dim=8, num_layers=1,
                      bidirectional=True, dropout_rate=0.0))
  c.model.update(model)
  c.train.batch_size = 8
  return c


def test_addition_held_out_pairs_never_trained_and_fixed_by_seed():
  problem = data.Addition(seed=0, max_digits=2, num_val=50, num_test=100)
  held = {s for split in ("val", "test")
          for s, _ in problem.eval_examples(split)}
  assert len(held) == 150
  trained = {s for step in range(100)
             for s, _ in problem.train_examples(64, step)}
  assert not held & trained and len(trained) > 1000
  for source, target in problem.eval_examples("test"):
    a, b = source.split("+")
    assert int(a) + int(b) == int(target)
  again = data.Addition(seed=0, max_digits=2, num_val=50, num_test=100)
  other = data.Addition(seed=1, max_digits=2, num_val=50, num_test=100)
  assert again.eval_examples("test") == problem.eval_examples("test")
  assert other.eval_examples("test") != problem.eval_examples("test")
  assert problem.train_examples(8, 3) == again.train_examples(8, 3)


def test_dates_split_by_day_and_render_unambiguously():
  problem = data.Dates(seed=0, num_val=200, num_test=300)
  test_days = {t for _, t in problem.eval_examples("test")}
  assert len(test_days) == 300  # each held-out day once
  trained = {t for step in range(50)
             for _, t in problem.train_examples(64, step)}
  assert not test_days & trained
  locales = set(data.DATE_LOCALES)
  for source, target in problem.eval_examples("val"):
    date = datetime.date.fromisoformat(target)
    assert str(date.year) in source  # four-digit years only
    # A locale prefix exactly when the rendering itself has no month name.
    head, _, rest = source.partition(" ")
    prefixed = head in locales
    assert prefixed == (not any(c.isalpha() for c in
                                (rest if prefixed else source))), source
  assert data.render_date(datetime.date(2002, 2, 14), "de_DE", "full") == (
      "Donnerstag, 14. Februar 2002")
  assert data.render_date(datetime.date(2002, 3, 2), "en_US", "numeric") == (
      "en_US 3/2/2002")
  assert data.render_date(datetime.date(2002, 2, 3), "es_ES", "numeric") == (
      "es_ES 3/2/2002")
  with pytest.raises(UserError, match="Unknown locale 'xx_YY'"):
    data.Dates(seed=0, locales=("xx_YY",))
  with pytest.raises(UserError, match=r"Unknown date format 'iso'.*'full'"):
    data.Dates(seed=0, formats=("iso",))


def test_vocab_round_trip_and_errors(tmp_path):
  vocab = data.Seq2SeqVocab("0123+")
  ids = vocab.encode("12+3", 6)
  assert list(ids[4:]) == [data.PAD, data.PAD]
  assert vocab.decode(vocab.encode("12", 4, eos=True)) == "12"
  vocab.save(tmp_path / "v.json")
  assert data.Seq2SeqVocab.load(tmp_path / "v.json") == vocab
  with pytest.raises(UserError, match=r"not in the vocabulary: \['x'\]"):
    vocab.encode("1x", 4)
  with pytest.raises(UserError, match="needs 5 positions; the maximum is 4"):
    vocab.encode("1233", 4, eos=True)


@pytest.fixture(scope="module")
def addition_task():
  task = task_lib.Seq2SeqTask(config())
  params = task.model.init(jax.random.key(0), *task.init_inputs())["params"]
  params = jax.tree.map(lambda p: p * 3, params)  # peaked, varied outputs
  return task, params


def test_teacher_forcing_equals_step_by_step(addition_task):
  task, params = addition_task
  _, batch = task.eval_pairs("val")
  batch = {k: jnp.asarray(v[:5]) for k, v in batch.items()}
  model = task.model
  logits, weights = model.apply({"params": params}, batch["source"],
                                batch["source_len"], batch["decoder_input"])
  encoded, carries = model.apply({"params": params}, batch["source"],
                                 batch["source_len"], method=model.encode)
  for t in range(batch["decoder_input"].shape[1]):
    step_logits, step_weights, carries = model.apply(
        {"params": params}, batch["decoder_input"][:, t], carries, encoded,
        batch["source_len"], method=model.step)
    # One step vs the whole sequence: two programs. Logits reach ~8 (the
    # weights are x3): atol scaled to them, for logits near zero.
    assert_float32_close(step_logits, logits[:, t],
                         atol=float32_atol(logits[:, t]))
    assert_float32_close(step_weights, weights[:, t])
  # Attention rows sum to 1 over the real source characters only.
  np.testing.assert_allclose(weights.sum(-1), 1, rtol=1e-5)
  for b, n in enumerate(np.asarray(batch["source_len"])):
    assert np.all(np.asarray(weights[b, :, n:]) == 0)


def _sequence_logprob(model, params, batch, tokens):
  """log p(tokens up to and including EOS | source), teacher-forced."""
  dec_in = jnp.concatenate([jnp.full((tokens.shape[0], 1), data.BOS),
                            tokens[:, :-1]], 1)
  logits, _ = model.apply({"params": params}, batch["source"],
                          batch["source_len"], dec_in)
  logp = jnp.take_along_axis(jax.nn.log_softmax(logits), tokens[..., None],
                             -1)[..., 0]
  ended = jnp.cumsum(tokens == data.EOS, 1) - (tokens == data.EOS)
  return jnp.sum(jnp.where(ended == 0, logp, 0), 1)


def test_beam_search_finds_at_least_the_greedy_score(addition_task):
  task, params = addition_task
  _, batch = task.eval_pairs("test")
  batch = {k: jnp.asarray(v[:20]) for k, v in batch.items()}
  max_len = task.problem.max_target_len
  greedy, _ = decode.greedy(task.model, params, batch["source"],
                            batch["source_len"], max_len)
  one, _ = decode.beam_search(task.model, params, batch["source"],
                              batch["source_len"], max_len, 1)
  np.testing.assert_array_equal(one, greedy)  # beam 1 is greedy
  beam, scores = decode.beam_search(task.model, params, batch["source"],
                                    batch["source_len"], max_len, 4)
  greedy_scores = _sequence_logprob(task.model, params, batch, greedy)
  finished = np.any(np.asarray(greedy) == data.EOS, 1)
  assert np.all(np.asarray(scores)[finished] >=
                np.asarray(greedy_scores)[finished] - 1e-4)
  np.testing.assert_allclose(
      scores, _sequence_logprob(task.model, params, batch, beam), atol=1e-4)


@pytest.mark.parametrize("attention", ["additive", "none"])
def test_tiny_run_lowers_held_out_loss(attention):
  c = config(attention=attention, hidden_size=32)
  c.seq2seq.max_digits, c.seq2seq.num_val, c.seq2seq.num_test = 2, 10, 50
  task = task_lib.Seq2SeqTask(c)
  from rnnlab import train  # pylint: disable=g-import-not-at-top
  c.train.batch_size, c.optim.learning_rate = 32, 1e-2
  c.optim.schedule, c.optim.warmup_steps = "constant", 0
  state, schedule = train.create_train_state(task.model, task.init_inputs(),
                                             c)
  step = train.make_train_step(task.loss_fn, schedule)
  before = task.evaluate(state.params, "test")
  for i in range(300):
    state, _, _ = step(state, task.train_batch(i), jax.random.key(i))
  after = task.evaluate(state.params, "test")
  # Held-out 2-digit sums: 300 steps take the loss from ~2.7 to ~0.9
  # nats/token (exact-match accuracy needs the full run, see the config).
  assert after["loss"] < before["loss"] / 2, (before, after)


@pytest.mark.parametrize("attention", seq2seq_model.ATTENTION_CHOICES)
def test_recipe_encoder_is_the_same_and_sees_both_sides(attention):
  """Every attention of the recipe gets one encoder, bidirectional and as
  wide as the decoder: each source position's key depends on the characters
  after it (an addition's carry comes from the digits to the right). The
  recipe once gave dot and scaled_dot a unidirectional encoder instead."""
  c = recipes.seq2seq_config("addition", f"{attention},runlocal")
  assert (c.model.bidirectional, c.model.bidirectional_merge) == (True, "sum")
  task = task_lib.Seq2SeqTask(c)
  params = task.model.init(jax.random.key(0), *task.init_inputs())["params"]
  encoded = []
  for source in ("12+34", "12+35"):
    b = data.encode_pairs(task.vocab, [(source, "0")],
                          task.problem.max_source_len,
                          task.problem.max_target_len)
    encoded.append(task.model.apply({"params": params}, b["source"],
                                    b["source_len"],
                                    method=task.model.encode)[0])
  assert encoded[0].shape[-1] == c.model.hidden_size  # the decoder's width
  # Only the last character differs; the first position must see it.
  assert np.max(np.abs(np.asarray(encoded[0][0, 0] - encoded[1][0, 0]))) > 0


def test_bad_names_are_clear_errors():
  with pytest.raises(UserError, match=r"Unknown seq2seq problem 'sums' "
                     r"\(config.seq2seq.problem\)\. Valid choices: "
                     r"'addition', 'dates'"):
    config_check.validate(config(problem="sums"))
  with pytest.raises(UserError, match=r"Unknown seq2seq attention 'luong' "
                     r"\(config.seq2seq.attention\).*'none'"):
    config_check.validate(config(attention="luong"))
  with pytest.raises(UserError, match=r"Too many held-out pairs \(seq2seq"):
    c = config()  # 30 + 60 held out of 10 x 10 pairs
    c.seq2seq.max_digits = 1
    config_check.validate(c)
  with pytest.raises(UserError, match=r"'dot' needs encoder outputs of the "
                     r"same width as the decoder \(16\); got 32.*"
                     r"bidirectional_merge='sum'"):
    c = config(attention="dot")  # bidirectional concat: keys twice as wide
    task = task_lib.Seq2SeqTask(c)
    task.model.init(jax.random.key(0), *task.init_inputs())
