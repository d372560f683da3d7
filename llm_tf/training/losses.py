"""The training loss, shared by the custom loop and `fit()`: cross-entropy over labelled positions.

Cross-entropy between float32 logits and integer labels, averaged over the
positions that carry a label. A label below zero (`IGNORE_LABEL` = -100, as
PyTorch's `ignore_index` and Hugging Face's labels) carries no loss: the padded
tail of the last validation batch, padding in sequence-to-sequence targets, the
prompt of an instruction-tuning example. Pre-training windows are all real
tokens, and then this is the plain mean.

Why not "labels == PAD carry no loss"? Because a label may legitimately equal
the padding id: class 0 of a classifier, or GPT-2's `<|endoftext|>`, which is
its end-of-text *and* its padding token and must still be learned.

Label smoothing (Szegedy et al. 2016; the Transformer paper §5.4 uses ε = 0.1)
spreads ε of the target mass uniformly over the V classes:
loss = (1 - ε) · NLL(label) + ε · mean_v(-log p_v).

Under `tf.distribute` a replica sees part of the batch: it returns the *sum*
and the *count*, and the step divides by the count over all replicas, so the
loss (and its gradient) is the mean over the global batch — "losses scaled to
the global batch" — whatever the split.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from llm_tf._validation import check_rate
from llm_tf.tokenizers.base import IGNORE_LABEL

__all__ = ["IGNORE_LABEL", "LanguageModelLoss", "Perplexity", "labelled", "token_loss_sum"]


def labelled(labels):
    """bool, True where `labels` carries a loss (label >= 0)."""
    return tf.greater_equal(labels, 0)


def token_loss_sum(labels, logits, label_smoothing: float = 0.0):
    """(sum of per-position cross-entropies over labelled positions, number of those positions).

    Args:
        labels: int (...) class ids; negative ids (`IGNORE_LABEL`) carry no loss.
        logits: (..., V); cast to float32 before the softmax.
        label_smoothing: ε in [0, 1); a Python float.

    Returns:
        two float32 scalars.
    """
    logits = tf.cast(logits, tf.float32)
    weights = tf.cast(labelled(labels), tf.float32)  # (...)
    labels = tf.maximum(labels, 0)  # ignored positions get a valid id, then weight 0
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    if label_smoothing:
        uniform = -tf.reduce_mean(tf.nn.log_softmax(logits), axis=-1)  # (...)
        losses = (1.0 - label_smoothing) * losses + label_smoothing * uniform
    return tf.reduce_sum(losses * weights), tf.reduce_sum(weights)


def check_label_smoothing(value) -> float:
    check_rate("label_smoothing", value)
    return float(value)


@keras.saving.register_keras_serializable(package="llm_tf")
class LanguageModelLoss(keras.losses.Loss):
    """`token_loss_sum` as a Keras loss for `model.compile`: the mean over labelled positions."""

    def __init__(self, label_smoothing: float = 0.0, name: str = "lm_loss", **kwargs):
        # Reduction is done here (sum / count), not by Keras' per-sample averaging.
        super().__init__(name=name, reduction="sum", **kwargs)
        self.label_smoothing = check_label_smoothing(label_smoothing)

    def call(self, y_true, y_pred):
        total, count = token_loss_sum(tf.cast(y_true, tf.int32), y_pred, self.label_smoothing)
        return total / tf.maximum(count, 1.0)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


@keras.saving.register_keras_serializable(package="llm_tf")
class Perplexity(keras.metrics.Metric):
    """exp(mean cross-entropy per labelled position), accumulated over batches."""

    def __init__(self, name: str = "perplexity", **kwargs):
        super().__init__(name=name, **kwargs)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        total, count = token_loss_sum(tf.cast(y_true, tf.int32), y_pred)
        self.total.assign_add(total)
        self.count.assign_add(count)

    def result(self):
        return tf.exp(self.total / tf.maximum(self.count, 1.0))

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)
