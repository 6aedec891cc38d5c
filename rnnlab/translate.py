"""Decodes new input with a trained sequence-to-sequence run.

  python -m rnnlab.translate --workdir=runs/numbers_fr_en \
      --text="quatre-vingt-dix-sept" --text="mille deux cent"
  python -m rnnlab.translate --workdir=runs/addition --text="12+345"
  python -m rnnlab.translate --workdir=runs/numbers_fr_en --file=in.txt \
      --beam_size=4 --json
  python -m rnnlab.translate --workdir=runs/numbers_fr_en --text="cent un" \
      --attention_plot=/tmp/attention.png

Prints one line per input: the output and the input, tab-separated
(--json: one JSON object per line). Uses the run's best checkpoint (chosen
on validation; the newest if there is none yet) unless --checkpoint=latest,
and its saved vocabulary (vocab.json); a character outside it is an error
that lists the vocabulary.
"""
from __future__ import annotations

import json
import sys

from absl import flags

from rnnlab import cli
from rnnlab.errors import UserError
from rnnlab.tasks import seq2seq as seq2seq_task


def main(argv):
  del argv
  f = flags.FLAGS
  if f.beam_size < 1:
    raise UserError(f"--beam_size={f.beam_size} must be >= 1 (1 = greedy).")
  texts = cli.read_texts(f.text or [], f.file, "translate")
  run = seq2seq_task.load_translator(f.workdir, f.checkpoint)
  outputs = run.translate(texts, beam_size=f.beam_size)
  for text, output in zip(texts, outputs):
    if f.json:
      sys.stdout.write(json.dumps({"input": text, "output": output},
                                  ensure_ascii=False) + "\n")
    else:
      sys.stdout.write(f"{output}\t{text}\n")
  if f.attention_plot:
    path = run.plot_attention(texts[0], f.attention_plot)
    sys.stderr.write(f"Attention of the first input: {path}\n")


def _define_flags():
  flags.DEFINE_string("workdir", None, "Sequence-to-sequence run directory.",
                      required=True)
  flags.DEFINE_multi_string("text", None, "An input (repeatable).")
  flags.DEFINE_string("file", "", "A file of inputs, one per line; - = stdin.")
  flags.DEFINE_enum("checkpoint", "best", ["best", "latest"],
                    "best: chosen on validation; latest: the newest.")
  flags.DEFINE_integer("beam_size", 1, "1: greedy; > 1: beam search.")
  flags.DEFINE_string("attention_plot", "",
                      "Write the first input's attention heatmap here (PNG).")
  flags.DEFINE_bool("json", False, "One JSON object per line.")


def run():
  cli.run_command(_define_flags, main)


if __name__ == "__main__":
  run()
