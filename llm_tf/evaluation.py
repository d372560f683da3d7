"""Scoring a trained model on held-out data, one function per kind of run.

`llm-tf evaluate --run RUN --data TEST` (llm_tf/commands/evaluate.py) reads the
run's task and calls the function for it; each returns a flat dict of numbers that
the command prints as one JSON line.

* language model ("lm"): `evaluate_language_model` — mean cross-entropy per token
  (nats) and perplexity over the whole text, every token after the first predicted
  once with up to `context_length` tokens of context (the validation rule of
  `llm_tf.data.lm`).
* translation ("translation"): `evaluate_translation` — corpus BLEU and chrF of the
  model's translations of the test sources against their references, computed by
  `sacrebleu` (the field's standard scorer: Post 2018, "A Call for Clarity in Reporting
  BLEU Scores") with its default settings (BLEU: 13a tokenization, 4-grams, exponential
  smoothing off; chrF: character 6-grams, β = 2), on detokenized text, so that the figures
  compare with published ones. `translation_scores` is the scoring alone.
"""

from __future__ import annotations

import sacrebleu
import tensorflow as tf

from llm_tf.data import evaluation_batches
from llm_tf.data.corpus import Corpus
from llm_tf.data.pairs import SentencePairs
from llm_tf.generation.translator import Translator
from llm_tf.training.step import EvalStep


def evaluate_language_model(model, tokenizer, corpus: Corpus, context_length: int,
                            batch_size: int) -> dict:
    """{"loss": nats per token, "perplexity": exp(loss), "tokens": tokens in the text}.

    Args:
        model: a `TransformerLM` (any model mapping (B, T) ids to (B, T, V) logits).
        tokenizer: the run's tokenizer.
        corpus: the text (`llm_tf.data.load_corpus(...)`).
        context_length: T, at most the model's `max_length`.
        batch_size: B, windows per batch (memory, not the result).
    """
    batches, tokens = evaluation_batches(corpus, tokenizer, context_length, batch_size)
    loss, perplexity = EvalStep(model, tf.distribute.get_strategy())(batches)
    return {"loss": loss, "perplexity": perplexity, "tokens": tokens}


def translation_scores(hypotheses: list[str], references: list[str]) -> dict:
    """{"bleu": corpus BLEU, "chrf": corpus chrF}, sacrebleu's defaults, 0–100."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references.")
    return {"bleu": sacrebleu.corpus_bleu(hypotheses, [references]).score,
            "chrf": sacrebleu.corpus_chrf(hypotheses, [references]).score}


def evaluate_translation(translator: Translator, pairs: SentencePairs, beam_size: int = 1,
                         length_penalty: float = 0.6) -> tuple[dict, list[str]]:
    """Translates every source of `pairs`: ({"bleu", "chrf", "sentences"}, hypotheses)."""
    hypotheses = translator.translate(list(pairs.sources), beam_size=beam_size,
                                      length_penalty=length_penalty)
    scores = translation_scores(hypotheses, list(pairs.targets))
    return {**scores, "sentences": len(hypotheses)}, hypotheses


# Validation pairs translated (greedily) at each evaluation while training: enough for a
# BLEU that moves smoothly, few enough to cost seconds.
VALIDATION_BLEU_PAIRS = 500


def validation_bleu(tokenizer, val_pairs: SentencePairs, limit: int = VALIDATION_BLEU_PAIRS):
    """`model -> {"val_bleu", "val_chrf"}` on the first `limit` validation pairs, greedy:
    what `llm-tf train --task translation` records at each evaluation."""
    pairs = val_pairs.subset(range(min(limit, len(val_pairs))))
    translators = {}

    def evaluate(model):
        if id(model) not in translators:
            translators.clear()
            translators[id(model)] = Translator(model, tokenizer)
        scores, _ = evaluate_translation(translators[id(model)], pairs)
        return {"val_bleu": scores["bleu"], "val_chrf": scores["chrf"]}

    return evaluate
