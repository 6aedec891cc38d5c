"""Word-level LM: vocabulary capped by frequency with <unk>, the char LM's
split, and a tiny training run that lowers the loss."""
from __future__ import annotations

import json

import numpy as np
import pytest

from rnnlab import sampling
from rnnlab import tasks
from rnnlab import train
from rnnlab.data import text
from tests.helpers import tiny_lm_config

TEXT = "the cat sat.\nthe dog sat on the cat's mat!\nO, the dog 'tis\n"


def test_split_words_keeps_punctuation_and_newlines():
  assert text.split_words("Speak, speak.\nO'er the cat's mat!") == [
      "Speak", ",", "speak", ".", "\n", "O'er", "the", "cat's", "mat", "!"]


def test_vocab_is_capped_by_frequency_with_unk():
  vocab = text.WordVocab.from_text(TEXT, max_size=5)
  # "the" x4, then ties in sorted order: "\n" x3; "!" "'" "," "." ... x1-2.
  assert vocab.words[0] == text.UNK
  assert vocab.words[1:3] == ["the", "\n"]
  assert len(vocab) == 5
  ids = vocab.encode("the zebra sat")
  assert ids[0] == vocab.words.index("the") and ids[1] == 0  # <unk>
  assert vocab.unknown("the zebra") == ["zebra"]
  with pytest.raises(ValueError, match="vocab_size=1 must be >= 2"):
    text.WordVocab.from_text(TEXT, max_size=1)


def test_decode_restores_spacing_and_json_round_trips(tmp_path):
  vocab = text.WordVocab.from_text(TEXT, max_size=100)
  line = "the dog sat on the cat's mat!\nO, the dog\n"
  assert vocab.decode(vocab.encode(line)) == line
  vocab.save(tmp_path / "vocab.json")
  assert text.load_vocab(tmp_path / "vocab.json") == vocab
  text.Vocab.from_text("abc").save(tmp_path / "chars.json")
  assert isinstance(text.load_vocab(tmp_path / "chars.json"), text.Vocab)
  (tmp_path / "bad.json").write_text(json.dumps({"type": "bpe"}))
  with pytest.raises(ValueError, match="unknown vocabulary type 'bpe'.*"
                     "'char', 'word'"):
    text.load_vocab(tmp_path / "bad.json")


def _word_config(corpus, **overrides):
  overrides = {"text__vocab_size": 50, "eval__num_streams": 4,
               "eval__seq_len": 16, **overrides}
  return tiny_lm_config("gru", task="word_lm", text__path=str(corpus),
                        **overrides)


def test_word_split_follows_the_char_split(tmp_path):
  words = " ".join(f"w{i % 37}" for i in range(3000)) + "\n"
  corpus = tmp_path / "words.txt"
  corpus.write_text(words, encoding="utf-8")
  task = tasks.create_task(_word_config(corpus))
  n_train = int(len(words) * 0.9)
  vocab = task.vocab
  np.testing.assert_array_equal(task.splits["train"],
                                vocab.encode(words[:n_train]))
  np.testing.assert_array_equal(task.splits["val"],
                                vocab.encode(words[n_train:]))
  assert len(vocab) == 38  # 37 words and <unk>


def test_tiny_word_lm_lowers_loss_and_reports_perplexity(tmp_path,
                                                         corpus_path):
  config = _word_config(corpus_path, text__vocab_size=300, train__steps=40,
                        train__eval_every=40, train__log_every=10,
                        optim__name="sparse_adam")
  results = train.train_and_evaluate(config, tmp_path)
  records = [json.loads(l) for l in (tmp_path / "metrics.jsonl").open()]
  losses = [r["loss"] for r in records if r["split"] == "train"]
  assert losses[-1] < losses[0] - 0.5
  val = results["eval"]["val"]
  assert val["perplexity"] == pytest.approx(np.exp(val["loss"]))
  assert val["perplexity"] < 300 and val["words"] > 25_000
  run = sampling.load_run_for_inference(tmp_path)
  assert isinstance(run.vocab, text.WordVocab) and len(run.vocab) == 300
