"""The Transformer encoder (design document §3.2 and §4.2; Vaswani et al. 2017, §3.1)."""

import keras

from llm_tf.layers.block import TransformerBlock
from llm_tf.layers.masks import combine_masks, key_padding_mask
from llm_tf.layers.masks import padding_mask as token_padding_mask
from llm_tf.layers.stack import TransformerStack


@keras.saving.register_keras_serializable(package="llm_tf")
class EncoderLayer(TransformerBlock):
    """Self-attention then feed-forward, each wrapped in residual + LayerNorm.

    The document's `encoder_layer` (§4.2) with its second residual fixed:
    `layer_norm(outputs + outputs)` becomes LayerNorm(x + FFN(x)), where x is
    the feed-forward's input. Arguments are those of `TransformerBlock`.

    Call arguments:
        x: (B, S, D).
        padding_mask: optional bool (B, S), True = real token; pad keys are
            ignored by every query.
        attention_mask: optional bool broadcastable to (B, S, S), AND-ed with it.
        training: enables dropout.

    Returns:
        (B, S, D).
    """

    def __init__(self, d_model, num_heads, dff, **kwargs):
        super().__init__(d_model, num_heads, dff, **kwargs)
        self.self_attention = self._attention("self_attention", rotary=True)
        self.self_attention_norm = self._norm("self_attention_norm")
        self.self_attention_dropout = self._dropout()
        self.feed_forward = self._feed_forward()
        self.feed_forward_norm = self._norm("feed_forward_norm")

    def build(self, input_shape):
        self.self_attention.build(input_shape)
        self.feed_forward.build(input_shape)
        self.self_attention_norm.build(input_shape)
        self.feed_forward_norm.build(input_shape)
        self.built = True

    def call(self, x, padding_mask=None, attention_mask=None, training=None):
        if padding_mask is not None:
            attention_mask = combine_masks(attention_mask, key_padding_mask(padding_mask))

        def attend(h):
            h = self.self_attention(h, attention_mask=attention_mask, training=training)
            return self.self_attention_dropout(h, training=training)

        x = self.residual(x, attend, self.self_attention_norm)
        return self.residual(x, lambda h: self.feed_forward(h, training=training),
                             self.feed_forward_norm)


@keras.saving.register_keras_serializable(package="llm_tf")
class TransformerEncoder(TransformerStack):
    """Embedding (× √D) + sinusoidal positions + `num_layers` encoder layers.

    This is the constructor the design document calls in §5.1, made real. (The
    document then uses it as a language model; an encoder sees every position,
    so it cannot be one: use `llm_tf.models.TransformerLM` for that.)

    Args:
        input_vocab_size: V of the source tokens.
        Others: see `TransformerStack` (num_layers, d_model, num_heads, dff,
            maximum_position_encoding, dropout_rate, norm_placement, activation,
            pad_id, layer_norm_epsilon).

    Call arguments:
        token_ids: int (B, S).
        padding_mask: optional bool (B, S); default `token_ids != pad_id`.
        training: enables dropout.

    Returns:
        (B, S, D). Outputs at padded positions are computed but meaningless.
    """

    def __init__(self, num_layers, d_model, num_heads, dff, input_vocab_size, **kwargs):
        super().__init__(num_layers, d_model, num_heads, dff, input_vocab_size, **kwargs)
        self.input_vocab_size = input_vocab_size
        self.encoder_layers = [
            EncoderLayer(d_model, num_heads, dff, name=f"encoder_layer_{i}",
                         **self.block_arguments())
            for i in range(num_layers)]

    def build(self, token_ids_shape):
        self.build_stack(token_ids_shape, self.encoder_layers)

    def call(self, token_ids, padding_mask=None, training=None):
        if padding_mask is None:
            padding_mask = token_padding_mask(token_ids, self.pad_id)
        x = self.embedding(token_ids, training=training)  # (B, S, D)
        for layer in self.encoder_layers:
            x = layer(x, padding_mask=padding_mask, training=training)
        return self.normalize_output(x)

    def get_config(self):
        return {**super().get_config(), "input_vocab_size": self.input_vocab_size}
