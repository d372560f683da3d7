"""Token embedding plus position information: the input end of every stack."""

import math

import keras
import tensorflow as tf

from llm_tf._validation import check_choice, check_positive, check_rate
from llm_tf.config import POSITION_ENCODINGS
from llm_tf.layers.initializers import clone_initializer
from llm_tf.layers.position import PositionalEncoding, PositionEmbedding


@keras.saving.register_keras_serializable(package="llm_tf")
class TokenAndPositionEmbedding(keras.layers.Layer):
    """Token ids -> vectors: embedding (optionally × √D) + positions, then dropout.

    Args:
        vocab_size: V.
        d_model: D.
        max_length: longest sequence accepted (size of the position table).
        position_encoding: "sinusoidal" (the paper), "learned" (GPT-2) or
            "rope" (nothing is added here; attention rotates queries and keys).
        scale_embeddings: multiply token vectors by √D before adding positions
            (the paper §3.4; keeps them comparable to sinusoids of amplitude 1).
        dropout: rate applied to the sum while training.
        embeddings_initializer: initializer of the token (and learned position) tables.

    Call arguments:
        token_ids: int (B, T), T <= max_length.
        positions: optional int (T,) or (B, T); default range(T). Per-row
            positions let left-padded rows start at 0.
        training: enables dropout.

    Returns:
        (B, T, D).
    """

    def __init__(self, vocab_size, d_model, max_length, position_encoding="learned",
                 scale_embeddings=False, dropout=0.0, embeddings_initializer="uniform",
                 **kwargs):
        super().__init__(**kwargs)
        check_positive("vocab_size", vocab_size)
        check_positive("d_model", d_model)
        check_positive("max_length", max_length)
        check_choice("position_encoding", position_encoding, POSITION_ENCODINGS)
        check_rate("dropout", dropout)
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.max_length = max_length
        self.position_encoding = position_encoding
        self.scale_embeddings = scale_embeddings
        self.dropout = dropout
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self.token_embedding = keras.layers.Embedding(
            vocab_size, d_model,
            embeddings_initializer=clone_initializer(self.embeddings_initializer),
            name="token_embedding", dtype=self.dtype_policy)
        if position_encoding == "learned":
            self.position_embedding = PositionEmbedding(
                max_length, d_model,
                embeddings_initializer=clone_initializer(self.embeddings_initializer),
                name="position_embedding", dtype=self.dtype_policy)
        elif position_encoding == "sinusoidal":
            self.position_embedding = PositionalEncoding(
                d_model, max_length, name="position_encoding", dtype=self.dtype_policy)
        else:
            self.position_embedding = None
        self.embedding_dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy)

    def build(self, input_shape):
        self.token_embedding.build(input_shape)
        if self.position_embedding is not None:
            self.position_embedding.build(input_shape)
        self.built = True

    @property
    def embeddings(self):
        """The (V, D) token table, shared with the output layer when weights are tied."""
        return self.token_embedding.embeddings

    def call(self, token_ids, positions=None, training=None):
        length = token_ids.shape[1]
        if length is not None and length > self.max_length:
            raise ValueError(
                f"The sequence has {length} tokens, more than `max_length`={self.max_length}. "
                "Cut it (generation keeps the last max_length tokens) or build a model "
                "with a larger max_length.")
        x = self.token_embedding(token_ids)  # (B, T, D)
        if self.scale_embeddings:
            x = x * tf.cast(math.sqrt(self.d_model), x.dtype)
        if self.position_embedding is not None:
            if positions is None:
                dynamic_length = tf.shape(token_ids)[1]
                tf.debugging.assert_less_equal(
                    dynamic_length, self.max_length,
                    message=f"sequence longer than max_length={self.max_length}")
                positions = tf.range(dynamic_length)
            x = x + self.position_embedding(positions)  # (B, T, D) + (T, D) or (B, T, D)
        return self.embedding_dropout(x, training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.d_model,)

    def get_config(self):
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "d_model": self.d_model,
            "max_length": self.max_length,
            "position_encoding": self.position_encoding,
            "scale_embeddings": self.scale_embeddings,
            "dropout": self.dropout,
            "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
        }
