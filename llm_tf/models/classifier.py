"""A sequence classifier on a decoder-only Transformer: §2.2.2's "task-specific layer".

The pre-trained language model's stack (`decoder_stack`, the body of `TransformerLM`)
reads the text; a pooling step turns its hidden states into one vector per text; a
Dense layer maps that vector to class logits:

    x = decoder(token_ids)                       # (B, T, D)  causal, as in pre-training
    h = pool(x, real tokens)                     # (B, D)     "last" or "mean"
    logits = head(dropout(h))                    # (B, C)     float32

**Pooling.** With causal attention, position t has read tokens 0..t only, so the last
real token is the one position that has read the whole text: GPT (Radford et al. 2018,
§3.3) classifies from the last position's state. "mean" averages the states of all real
tokens instead (the common alternative for sentence features); its early positions have
read little of the text. docs/fine-tuning.md measures both.

**Padding.** Batches are right-padded with PAD (id 0, which no text token has). Causal
attention never lets a real position read a later one, so the padding needs no attention
mask: it only has to be left out of the pooling.

The head's logits are float32 whatever the compute dtype, as `TransformerLM`'s are.
"""

import keras
import tensorflow as tf

from llm_tf._validation import check_choice, check_positive
from llm_tf.config import POOLINGS, ModelConfig
from llm_tf.models.lm import INIT_STDDEV, decoder_stack
from llm_tf.tokenizers.base import PAD_ID
from llm_tf.weights import StampedWeights


def real_tokens(token_ids, pad_id: int = PAD_ID):
    """bool (B, T): True at the tokens of right-padded `token_ids`, False at the padding."""
    return tf.not_equal(token_ids, pad_id)


def pool(hidden, mask, pooling: str):
    """(B, T, D) hidden states -> (B, D) float32 features of the real tokens (`mask` (B, T)).

    "last": the state at each row's last real token; "mean": the mean over its real tokens.
    A row without real tokens (batch filler) gets the state at position 0, or zeros.
    """
    hidden = tf.cast(hidden, tf.float32)
    if pooling == "last":
        last = tf.maximum(tf.reduce_sum(tf.cast(mask, tf.int32), axis=1) - 1, 0)  # (B,)
        return tf.gather(hidden, last, axis=1, batch_dims=1)  # (B, D)
    weights = tf.cast(mask, tf.float32)[:, :, None]  # (B, T, 1)
    total = tf.reduce_sum(hidden * weights, axis=1)  # (B, D)
    return total / tf.maximum(tf.reduce_sum(weights, axis=1), 1.0)


@keras.saving.register_keras_serializable(package="llm_tf")
class TransformerClassifier(StampedWeights, keras.Model):
    """Decoder-only Transformer with a classification head.

    Args:
        config: the backbone's `ModelConfig` (the pre-trained run's, or its dict form).
        num_classes: C, the number of classes (>= 2).
        pooling: "last" or "mean" (see the module docstring).
        pad_id: the padding id of right-padded inputs.

    Call arguments:
        token_ids: int (B, T), T <= config.max_length, right-padded with `pad_id`.
        training: enables dropout; a backbone that is not trainable (feature extraction)
            always runs in inference mode, so the features it gives are fixed.

    Returns:
        logits (B, C), float32.

    `features(token_ids)` gives the pooled (B, D) vectors the head reads. The backbone is
    `self.decoder`, laid out as `TransformerLM.decoder`, so a language model's weights copy
    into it variable for variable (llm_tf/fine_tuning/pretrained.py).
    """

    def __init__(self, config, num_classes, pooling="last", pad_id=PAD_ID, **kwargs):
        if isinstance(config, dict):
            config = ModelConfig.from_dict(config)
        if not isinstance(config, ModelConfig):
            raise ValueError("`config` must be a llm_tf.ModelConfig or its dict. "
                             f"Received: config={config!r}")
        check_positive("num_classes", num_classes)
        if num_classes < 2:
            raise ValueError(f"`num_classes` must be at least 2. Received: num_classes="
                             f"{num_classes}")
        check_choice("pooling", pooling, POOLINGS)
        super().__init__(**kwargs)
        self.config = config
        self.num_classes = num_classes
        self.pooling = pooling
        self.pad_id = pad_id
        self.decoder = decoder_stack(config, self.dtype_policy)
        self.head_dropout = keras.layers.Dropout(config.dropout, dtype="float32")
        # GPT-2's N(0, 0.02), as every other projection of the model.
        self.head = keras.layers.Dense(
            num_classes, kernel_initializer=keras.initializers.RandomNormal(stddev=INIT_STDDEV),
            name="head", dtype="float32")

    def build(self, token_ids_shape=(None, None)):
        if self.built:
            return
        self.decoder.build(token_ids_shape)
        self.head.build((None, self.config.d_model))
        self.built = True

    def features(self, token_ids, training=None):
        """int (B, T) right-padded ids -> (B, D) float32 pooled features."""
        backbone_training = bool(training) and self.decoder.trainable
        hidden = self.decoder(token_ids, training=backbone_training)  # (B, T, D)
        return pool(hidden, real_tokens(token_ids, self.pad_id), self.pooling)

    def call(self, token_ids, training=None):
        features = self.features(token_ids, training=training)  # (B, D)
        return self.head(self.head_dropout(features, training=training))  # (B, C)

    def weights_config(self):
        return self.config

    def compute_output_shape(self, token_ids_shape):
        return (token_ids_shape[0], self.num_classes)

    def get_config(self):
        return {**super().get_config(), "config": self.config.to_dict(),
                "num_classes": self.num_classes, "pooling": self.pooling, "pad_id": self.pad_id}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(ModelConfig.from_dict(config.pop("config")), **config)
