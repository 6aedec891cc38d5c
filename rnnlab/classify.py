"""Labels new text with a trained text-classification run.

  python -m rnnlab.classify --workdir=runs/gru_rotten_tomatoes \
      --text="A gorgeous, witty film." --text="Two hours I will not get back."
  python -m rnnlab.classify --workdir=runs/gru_rotten_tomatoes --file=reviews.txt
  cat reviews.txt | python -m rnnlab.classify --workdir=... --file=-

Prints one line per text: the label, its probability and the text, tab-
separated (--json: one JSON object per line, with every class's
probability). Uses the run's best checkpoint (chosen on validation; the
newest if there is none yet) unless --checkpoint=latest, and its saved
vocabulary (metadata.json): no training data is read.
"""
from __future__ import annotations

import json
import sys

from absl import flags

from rnnlab import cli
from rnnlab.tasks import classify as classify_task


def main(argv):
  del argv
  f = flags.FLAGS
  texts = cli.read_texts(f.text or [], f.file, "label")
  run = classify_task.load_text_classifier(f.workdir, f.checkpoint)
  probabilities = run.probabilities(texts)
  for text, p in zip(texts, probabilities):
    best = int(p.argmax())
    if f.json:
      sys.stdout.write(json.dumps({
          "text": text, "label": run.classes[best],
          "probability": float(p[best]),
          "probabilities": dict(zip(run.classes, map(float, p)))}) + "\n")
    else:
      sys.stdout.write(f"{run.classes[best]}\t{p[best]:.4f}\t{text}\n")


def _define_flags():
  flags.DEFINE_string("workdir", None, "Text-classification run directory.",
                      required=True)
  flags.DEFINE_multi_string("text", None, "A text to label (repeatable).")
  flags.DEFINE_string("file", "", "A file of texts, one per line; - = stdin.")
  flags.DEFINE_enum("checkpoint", "best", ["best", "latest"],
                    "best: chosen on validation; latest: the newest.")
  flags.DEFINE_bool("json", False, "One JSON object per line.")


def run():
  cli.run_command(_define_flags, main)


if __name__ == "__main__":
  run()
