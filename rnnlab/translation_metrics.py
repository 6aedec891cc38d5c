"""Translation quality of decoded strings against their references.

  bleu         corpus BLEU (Papineni et al. 2002: geometric mean of 1-4-gram
               precisions times the brevity penalty), 0-100, sacrebleu's
               default 13a tokenisation, so figures compare with papers
  chrf         corpus chrF (Popovic 2015: character 1-6-gram F-beta, beta 2),
               0-100; kinder than BLEU to near-misses inside a word
  exact_match  share of hypotheses equal to their reference, 0-1

One reference per hypothesis. sacrebleu is a declared dependency.
"""
from __future__ import annotations

from typing import Sequence

from rnnlab.errors import UserError


def score(hypotheses: Sequence[str], references: Sequence[str]
          ) -> dict[str, float]:
  """-> {"bleu", "chrf", "exact_match"} over the corpus."""
  import sacrebleu  # pylint: disable=g-import-not-at-top
  if len(hypotheses) != len(references):
    raise UserError(f"{len(hypotheses)} hypotheses for {len(references)} "
                    "references: they must pair up.")
  if not references:
    raise UserError("No references to score against.")
  hyps, refs = list(hypotheses), [list(references)]
  return {
      "bleu": float(sacrebleu.corpus_bleu(hyps, refs).score),
      "chrf": float(sacrebleu.corpus_chrf(hyps, refs).score),
      "exact_match": sum(h == r for h, r in zip(hyps, references))
                     / len(references),
  }
