"""The encoder–decoder Transformer (design document §2.1.1, §3.3, §4.3; the paper's model)."""

import keras
import tensorflow as tf

from llm_tf.layers.decoder import TransformerDecoder
from llm_tf.layers.encoder import TransformerEncoder
from llm_tf.layers.masks import padding_mask as token_padding_mask


@keras.saving.register_keras_serializable(package="llm_tf")
class Transformer(keras.Model):
    """Encoder–decoder Transformer for sequence-to-sequence tasks (translation, summaries).

    The encoder reads the whole source; the decoder predicts the target one token
    at a time, attending causally to itself and fully to the encoder's outputs.

    Args:
        num_layers, d_model, num_heads, dff: as in `TransformerEncoder`, shared
            by both stacks.
        input_vocab_size: source vocabulary.
        target_vocab_size: target vocabulary (size of the logits).
        maximum_position_encoding: longest source or target accepted.
        dropout_rate: dropout everywhere.
        norm_placement: "post" (the paper) or "pre".
        activation: feed-forward activation.
        pad_id: padding id in both sources and targets.

    Call arguments:
        inputs: a pair (source_ids (B, S), target_ids (B, T)); target_ids are
            the decoder's inputs (BOS + target[:-1], "teacher forcing").
        training: enables dropout.

    Returns:
        logits (B, T, target_vocab_size), float32.
    """

    def __init__(self, num_layers, d_model, num_heads, dff, input_vocab_size,
                 target_vocab_size, maximum_position_encoding=10000, dropout_rate=0.1,
                 norm_placement="post", activation="relu", pad_id=0, **kwargs):
        super().__init__(**kwargs)
        self.num_layers = num_layers
        self.d_model = d_model
        self.num_heads = num_heads
        self.dff = dff
        self.input_vocab_size = input_vocab_size
        self.target_vocab_size = target_vocab_size
        self.maximum_position_encoding = maximum_position_encoding
        self.dropout_rate = dropout_rate
        self.norm_placement = norm_placement
        self.activation = activation
        self.pad_id = pad_id
        shared = dict(num_layers=num_layers, d_model=d_model, num_heads=num_heads, dff=dff,
                      maximum_position_encoding=maximum_position_encoding,
                      dropout_rate=dropout_rate, norm_placement=norm_placement,
                      activation=activation, pad_id=pad_id, dtype=self.dtype_policy)
        self.encoder = TransformerEncoder(input_vocab_size=input_vocab_size, name="encoder",
                                          **shared)
        self.decoder = TransformerDecoder(target_vocab_size=target_vocab_size, name="decoder",
                                          **shared)
        self.final_dense = keras.layers.Dense(target_vocab_size, name="final_dense",
                                              dtype="float32")

    def build(self, inputs_shape=((None, None), (None, None))):
        if self.built:  # building twice would try to create the variables again
            return
        source_shape, target_shape = inputs_shape
        # Sublayers may already be built by direct `encode`/`decode` calls.
        if not self.encoder.built:
            self.encoder.build(source_shape)
        if not self.decoder.built:
            self.decoder.build(target_shape, tuple(source_shape) + (self.d_model,))
        if not self.final_dense.built:
            self.final_dense.build(tuple(target_shape) + (self.d_model,))
        self.built = True

    def encode(self, source_ids, training=None):
        """source_ids (B, S) -> (encoder outputs (B, S, D), source padding mask (B, S))."""
        self.build()
        source_mask = token_padding_mask(source_ids, self.pad_id)
        return self.encoder(source_ids, padding_mask=source_mask, training=training), source_mask

    def decode(self, target_ids, encoder_outputs, source_mask, cache=None, cache_index=None,
               training=None, return_attention_scores=False):
        """Decoder pass -> logits (B, T, V); plus the cache and/or weights when asked.

        Args:
            target_ids: int (B, T), or (B, t) new tokens with a cache.
            encoder_outputs: (B, S, D) from `encode`.
            source_mask: bool (B, S) from `encode`.
            cache: optional (L, B, 2, H, T_max, Dh) from `init_cache`.
            cache_index: int scalar, position of target_ids[:, 0].
            training: enables dropout.
            return_attention_scores: also return each decoder layer's weights
                ({"self_attention", "cross_attention"} dicts).
        """
        outputs = self.decoder(target_ids, encoder_outputs, encoder_padding_mask=source_mask,
                               cache=cache, cache_index=cache_index, training=training,
                               return_attention_scores=return_attention_scores)
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        logits = self.final_dense(outputs[0])  # (B, T, V), float32
        return logits if len(outputs) == 1 else (logits,) + outputs[1:]

    def init_cache(self, batch_size, max_length):
        """Zeros (L, B, 2, H, max_length, Dh) for the decoder's self-attention."""
        if not 0 < max_length <= self.maximum_position_encoding:
            raise ValueError(
                "`max_length` must be in [1, maximum_position_encoding="
                f"{self.maximum_position_encoding}]. Received: max_length={max_length!r}")
        return tf.zeros((self.num_layers, batch_size, 2, self.num_heads, max_length,
                         self.d_model // self.num_heads), dtype=self.compute_dtype)

    def call(self, inputs, training=None):
        source_ids, target_ids = inputs
        encoder_outputs, source_mask = self.encode(source_ids, training=training)
        return self.decode(target_ids, encoder_outputs, source_mask, training=training)

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape[1]) + (self.target_vocab_size,)

    def get_config(self):
        return {
            **super().get_config(),
            "num_layers": self.num_layers,
            "d_model": self.d_model,
            "num_heads": self.num_heads,
            "dff": self.dff,
            "input_vocab_size": self.input_vocab_size,
            "target_vocab_size": self.target_vocab_size,
            "maximum_position_encoding": self.maximum_position_encoding,
            "dropout_rate": self.dropout_rate,
            "norm_placement": self.norm_placement,
            "activation": self.activation,
            "pad_id": self.pad_id,
        }
