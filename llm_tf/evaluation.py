"""Scoring a trained model on held-out data, one function per kind of run.

`llm-tf evaluate --run RUN --data TEST` (llm_tf/commands/evaluate.py) reads the
run's task and calls the function for it; each returns a flat dict of numbers that
the command prints as one JSON line.

* language model ("lm"): `evaluate_language_model` — mean cross-entropy per token
  (nats) and perplexity over the whole text, every token after the first predicted
  once with up to `context_length` tokens of context (the validation rule of
  `llm_tf.data.lm`).
"""

from __future__ import annotations

import tensorflow as tf

from llm_tf.data import evaluation_batches
from llm_tf.data.corpus import Corpus
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
