"""The Transformer encoder (design document §3.2 and §4.2; Vaswani et al. 2017, §3.1)."""

import keras

from llm_tf.layers.block import TransformerBlock
from llm_tf.layers.masks import combine_masks, key_padding_mask
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
        positions: optional int (S,) or (B, S), for rotary encoding.
        training: enables dropout.
        attention_mask: optional bool broadcastable to (B, S, S), AND-ed with it.

    Returns:
        (B, S, D). `attention_weights(x, ...)` (same arguments, no `training`)
        returns {"self_attention": (B, H, S, S)}.
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

    def call(self, x, padding_mask=None, positions=None, training=None, attention_mask=None):
        mask = self._mask(padding_mask, attention_mask)

        def attend(h):
            h = self.self_attention(h, attention_mask=mask, positions=positions,
                                    training=training)
            return self.self_attention_dropout(h, training=training)

        x = self.residual(x, attend, self.self_attention_norm)                      # (B, S, D)
        return self.residual(x, lambda h: self.feed_forward(h, training=training),
                             self.feed_forward_norm)                                # (B, S, D)

    def attention_weights(self, x, padding_mask=None, positions=None, attention_mask=None):
        h = self.sublayer_input(x, self.self_attention_norm)
        return {"self_attention": self.self_attention.attention_weights(
            h, attention_mask=self._mask(padding_mask, attention_mask), positions=positions)}

    @staticmethod
    def _mask(padding_mask, attention_mask):
        if padding_mask is None:
            return attention_mask
        return combine_masks(attention_mask, key_padding_mask(padding_mask))


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
            pad_id, layer_norm_epsilon, ...).

    Call arguments:
        token_ids: int (B, S).
        padding_mask: optional bool (B, S); default `token_ids != pad_id`.
        positions: optional int (S,) or (B, S); default range(S).
        training: enables dropout.

    Returns:
        (B, S, D). Outputs at padded positions are computed but meaningless.
    """

    def __init__(self, num_layers, d_model, num_heads, dff, input_vocab_size, **kwargs):
        super().__init__(num_layers, d_model, num_heads, dff, input_vocab_size,
                         block_class=EncoderLayer, **kwargs)
        self.input_vocab_size = input_vocab_size

    def get_config(self):
        return {**super().get_config(), "input_vocab_size": self.input_vocab_size}
