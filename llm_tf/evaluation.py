"""Scoring a trained model on held-out data, one function per kind of run.

`llm-tf evaluate --run RUN --data TEST` (llm_tf/commands/evaluate.py) reads the
run's task and calls the function for it; each returns a flat dict of numbers that
the command prints as one JSON line.

* language model ("lm"): `evaluate_language_model` — mean cross-entropy per token
  (nats) and perplexity over the whole text, every token after the first predicted
  once with up to `context_length` tokens of context (the validation rule of
  `llm_tf.data.lm`); `evaluate_prepared_validation` the same over the validation
  shards of a directory made by `llm-tf prepare`.
* translation ("translation"): `evaluate_translation` — corpus BLEU and chrF of the
  model's translations of the test sources against their references, computed by
  `sacrebleu` (the field's standard scorer: Post 2018, "A Call for Clarity in Reporting
  BLEU Scores") with its default settings (BLEU: 13a tokenization, 4-grams, exponential
  smoothing off; chrF: character 6-grams, β = 2), on detokenized text, so that the figures
  compare with published ones. `translation_scores` is the scoring alone.
* classifier ("classify"): `ClassifierScorer` — accuracy and macro-F1 (and the mean
  cross-entropy) over labelled texts; `classification_scores` is the arithmetic.
* instruction-tuned model ("instruct"): `evaluate_instructions` — cross-entropy per
  response token (prompts carry no loss, as in training), and how many greedy answers
  equal the reference exactly.
"""

from __future__ import annotations

import numpy as np
import sacrebleu
import tensorflow as tf

from llm_tf.config import DataConfig
from llm_tf.data import evaluation_batches, ordered_batches
from llm_tf.data.corpus import Corpus
from llm_tf.data.pairs import SentencePairs
from llm_tf.generation import Generator
from llm_tf.generation.translator import Translator
from llm_tf.tokenizers.base import IGNORE_LABEL
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


def evaluate_prepared_validation(model, tokenizer, prepared, context_length: int,
                                 batch_size: int) -> dict:
    """`evaluate_language_model` on a prepared directory's validation shards
    (`llm_tf.data.prepared.PreparedCorpus`), scored by the same rule: {"loss",
    "perplexity", "tokens"}. `tokenizer` must be the one the shards were made with (a
    `DataError` otherwise): ids of another vocabulary would be scored as if they were its."""
    prepared.check_tokenizer(tokenizer, "the run's")
    data_config = DataConfig(context_length=context_length, batch_size=batch_size)
    batches = prepared.val_batches(data_config, pad_id=tokenizer.pad_id)
    loss, perplexity = EvalStep(model, tf.distribute.get_strategy())(batches)
    return {"loss": loss, "perplexity": perplexity, "tokens": prepared.num_val_tokens}


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


def classification_scores(labels, predictions, num_classes: int) -> dict:
    """{"accuracy", "macro_f1"} of predicted class ids against true ones.

    Macro-F1 is the unweighted mean over classes of F1 = 2·TP / (2·TP + FP + FN), taken over
    the classes that occur in `labels` or `predictions` (scikit-learn's `f1_score(...,
    average="macro")`): each class counts alike however rare, which is what makes it
    informative when one class dominates (always answering "ham" scores 0.404 on a 68/32 set).
    """
    labels = np.asarray(labels, np.int64)
    predictions = np.asarray(predictions, np.int64)
    confusion = np.zeros((num_classes, num_classes), np.int64)  # [true, predicted]
    np.add.at(confusion, (labels, predictions), 1)
    true_positives = np.diag(confusion)
    support, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
    present = (support + predicted) > 0
    f1 = 2 * true_positives / np.maximum(support + predicted, 1)
    return {"accuracy": float(true_positives.sum() / max(len(labels), 1)),
            "macro_f1": float(f1[present].mean()) if present.any() else 0.0}


class ClassifierScorer:
    """Scores a classifier on fixed labelled texts, as often as asked (one compiled pass).

    Args:
        model: a `TransformerClassifier`.
        token_ids: int32 (N, T), right-padded (`llm_tf.data.encode_texts`).
        labels: int (N,) class ids.
        batch_size: texts per forward pass (memory, not the result).

    `scorer()` -> {"accuracy", "macro_f1", "majority_accuracy"}; `scorer.probabilities()`
    -> float32 (N, C); `scorer.evaluate()` adds "loss" (mean cross-entropy) and "examples".
    "majority_accuracy" is the share of the most frequent class among the texts: what
    always answering it would score, the bar an accuracy must clear on imbalanced classes.
    """

    def __init__(self, model, token_ids, labels, batch_size: int):
        self.model = model
        self.labels = np.asarray(labels)
        self.count = len(self.labels)
        self.majority = float(np.bincount(self.labels).max() / self.count) if self.count else 0.0
        self.batches = ordered_batches((np.asarray(token_ids, np.int32),), batch_size,
                                       (model.pad_id,))
        self._forward = tf.function(lambda ids: tf.nn.softmax(model(ids, training=False)))

    def probabilities(self) -> np.ndarray:
        rows = [self._forward(ids).numpy() for (ids,) in self.batches]
        return np.concatenate(rows)[:self.count]

    def __call__(self) -> dict:
        predictions = self.probabilities().argmax(axis=-1)
        return {**classification_scores(self.labels, predictions, self.model.num_classes),
                "majority_accuracy": self.majority}

    def evaluate(self) -> dict:
        probabilities = self.probabilities()
        scores = classification_scores(self.labels, probabilities.argmax(axis=-1),
                                       self.model.num_classes)
        picked = probabilities[np.arange(self.count), self.labels]
        loss = float(-np.log(np.maximum(picked, np.finfo(np.float32).tiny)).mean())
        return {**scores, "majority_accuracy": self.majority, "loss": loss,
                "examples": self.count}


def evaluate_instructions(model, tokenizer, encoded, prompts, responses, batch_size: int,
                          max_new_tokens: int) -> dict:
    """{"loss": nats per response token, "perplexity", "tokens": response tokens (with their
    EOS), "exact_match": share of greedy answers equal to the reference, "examples"}.

    Args:
        model: a `TransformerLM` tuned on prompt/response pairs.
        encoded: `llm_tf.data.EncodedInstructions` of the pairs (prompt positions ignored).
        prompts: the prompts inside the run's template (what the model reads).
        responses: the reference answers.
        max_new_tokens: the longest answer generated.
    """
    batches = ordered_batches((encoded.x, encoded.y), batch_size,
                              (tokenizer.pad_id, IGNORE_LABEL))
    loss, perplexity = EvalStep(model, tf.distribute.get_strategy())(batches)
    generator = Generator(model, tokenizer)
    answers = []
    for start in range(0, len(prompts), batch_size):
        answers += generator.generate(list(prompts[start:start + batch_size]), max_new_tokens)
    matches = sum(a == r for a, r in zip(answers, responses))
    return {"loss": loss, "perplexity": perplexity, "tokens": encoded.response_tokens,
            "exact_match": matches / max(len(prompts), 1), "examples": len(prompts)}
