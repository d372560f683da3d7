"""The language-modelling loss, shared by the custom loop and `fit()`.

Cross-entropy between float32 logits and the next tokens, averaged over the
tokens that are not padding (PAD = 0 for every llm_tf tokenizer). Padding only
appears in the last, partial validation batch or in padded fine-tuning data;
pre-training windows are all real tokens, and then this is the plain mean.

Under `tf.distribute` a replica sees part of the batch: it returns the *sum*
and the *count*, and the step divides by the count over all replicas, so the
loss (and its gradient) is the mean over the global batch — "losses scaled to
the global batch" — whatever the split.
"""

from __future__ import annotations

import keras
import tensorflow as tf

PAD_ID = 0


def token_loss_sum(labels, logits, pad_id: int = PAD_ID):
    """(sum of per-token cross-entropies over non-pad labels, number of those tokens).

    Args:
        labels: int (B, T) next-token ids.
        logits: (B, T, V); cast to float32 before the softmax.

    Returns:
        two float32 scalars.
    """
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=labels, logits=tf.cast(logits, tf.float32))  # (B, T)
    weights = tf.cast(tf.not_equal(labels, pad_id), tf.float32)  # (B, T)
    return tf.reduce_sum(losses * weights), tf.reduce_sum(weights)


@keras.saving.register_keras_serializable(package="llm_tf")
class LanguageModelLoss(keras.losses.Loss):
    """`token_loss_sum` as a Keras loss for `model.compile`: the mean over non-pad tokens."""

    def __init__(self, pad_id: int = PAD_ID, name: str = "lm_loss", **kwargs):
        # Reduction is done here (sum / count), not by Keras' per-sample averaging.
        super().__init__(name=name, reduction="sum", **kwargs)
        self.pad_id = pad_id

    def call(self, y_true, y_pred):
        total, count = token_loss_sum(tf.cast(y_true, tf.int32), y_pred, self.pad_id)
        return total / tf.maximum(count, 1.0)

    def get_config(self):
        return {**super().get_config(), "pad_id": self.pad_id}


@keras.saving.register_keras_serializable(package="llm_tf")
class Perplexity(keras.metrics.Metric):
    """exp(mean cross-entropy per non-pad token), accumulated over batches."""

    def __init__(self, pad_id: int = PAD_ID, name: str = "perplexity", **kwargs):
        super().__init__(name=name, **kwargs)
        self.pad_id = pad_id
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        total, count = token_loss_sum(tf.cast(y_true, tf.int32), y_pred, self.pad_id)
        self.total.assign_add(total)
        self.count.assign_add(count)

    def result(self):
        return tf.exp(self.total / tf.maximum(self.count, 1.0))

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "pad_id": self.pad_id}
