"""The encoder–decoder Transformer (design document §2.1.1, §3.3, §4.3; the paper's model)."""

import keras

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

    def decode(self, target_ids, encoder_outputs, source_mask, training=None):
        """Decoder pass: target_ids int (B, T) -> logits (B, T, V) float32.

        Args:
            target_ids: int (B, T), the decoder's inputs.
            encoder_outputs: (B, S, D) from `encode`.
            source_mask: bool (B, S) from `encode`.
            training: enables dropout.
        """
        x = self.decoder(target_ids, encoder_outputs, encoder_padding_mask=source_mask,
                         training=training)  # (B, T, D)
        return self.final_dense(x)  # (B, T, V), float32

    def decode_with_cache(self, target_ids, cache, cache_index, encoder_outputs, source_mask):
        """t new target tokens against the decoder's cache -> (logits (B, t, V), cache).

        Args:
            target_ids: int (B, t), the tokens at positions [cache_index, cache_index + t).
            cache: the L per-layer tensors (B, 2, H, T_max, Dh) from `init_cache`.
            cache_index: int scalar.
            encoder_outputs, source_mask: from `encode`.
        """
        x, cache = self.decoder.call_with_cache(target_ids, cache, cache_index, encoder_outputs,
                                                encoder_padding_mask=source_mask)
        return self.final_dense(x), cache

    def attention_weights(self, source_ids, target_ids):
        """Each decoder layer's {"self_attention": (B, H, T, T), "cross_attention":
        (B, H, T, S)}, a list of L dicts (for plots)."""
        encoder_outputs, source_mask = self.encode(source_ids)
        return self.decoder.attention_weights(target_ids, encoder_outputs,
                                              encoder_padding_mask=source_mask)

    def init_cache(self, batch_size, max_length):
        """Zeros for the decoder's self-attention: a tuple of L tensors
        (B, 2, H, max_length, Dh), max_length <= maximum_position_encoding."""
        return self.decoder.init_cache(batch_size, max_length)

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
