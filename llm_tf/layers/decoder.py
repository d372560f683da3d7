"""The Transformer decoder (design document §3.3 and §4.3; Vaswani et al. 2017, §3.1).

Without cross-attention the same block and stack are GPT's: `TransformerLM` is a
`TransformerDecoder(use_cross_attention=False)` with an output head.
"""

import keras

from llm_tf.layers.block import TransformerBlock
from llm_tf.layers.masks import key_padding_mask
from llm_tf.layers.stack import TransformerStack


@keras.saving.register_keras_serializable(package="llm_tf")
class DecoderLayer(TransformerBlock):
    """Causal self-attention, cross-attention to the encoder, feed-forward.

    The document's `decoder_layer` (§4.3) with its two bugs fixed: each residual
    adds the sublayer's input (not `outputs + outputs`), and cross-attention is
    masked by the *encoder's* padding, not by the decoder's own mask. With
    `use_cross_attention=False` this is a GPT block, the unit of `TransformerLM`:
    two residual lines, `x + Attention(LN(x))` and `x + FFN(LN(x))` (pre-LN), or
    `LN(x + Attention(x))` and `LN(x + FFN(x))` (post-LN), see `TransformerBlock.residual`.

    Args:
        use_cross_attention: build the encoder–decoder attention sublayer.
        Others: see `TransformerBlock`.

    Call arguments (`call`, and `call_with_cache` after its cache arguments):
        x: (B, T, D) — or the t new positions (B, t, D) with a cache.
        encoder_outputs: (B, S, D); required with cross-attention.
        padding_mask: optional bool over the self-attention keys, True = real
            token: (B, T), or (B, T_max) over the cache slots.
        encoder_padding_mask: optional bool (B, S) over the encoder outputs.
        positions: int (T,) or (B, T), positions of `x` for rotary encoding.
        training: enables dropout (`call` only: decoding never trains).
        cache: (B, 2, H, T_max, Dh) self-attention keys and values so far.
        cache_index: int scalar, position of x[:, 0] in the cache.
        encoder_key_values: (`call_with_cache` only) (B, 2, H, S, Dh) from
            `encoder_key_values(encoder_outputs)`, in place of `encoder_outputs`: the
            encoder's outputs projected to keys and values once per decoded sequence,
            not at every step.

    Returns:
        `call`: (B, T, D). `call_with_cache`: ((B, t, D), updated cache).
        `encoder_key_values`: (B, 2, H, S, Dh).
        `attention_weights`: {"self_attention": (B, H, T, T), "cross_attention":
        (B, H, T, S)} (cross only with cross-attention).
    """

    def __init__(self, d_model, num_heads, dff, use_cross_attention=True, **kwargs):
        super().__init__(d_model, num_heads, dff, **kwargs)
        self.use_cross_attention = use_cross_attention
        self.self_attention = self._attention("self_attention", rotary=True)
        self.self_attention_norm = self._norm("self_attention_norm")
        self.self_attention_dropout = self._dropout()
        if use_cross_attention:
            self.cross_attention = self._attention("cross_attention", rotary=False)
            self.cross_attention_norm = self._norm("cross_attention_norm")
            self.cross_attention_dropout = self._dropout()
        self.feed_forward = self._feed_forward()
        self.feed_forward_norm = self._norm("feed_forward_norm")

    def build(self, x_shape, encoder_outputs_shape=None):
        self.self_attention.build(x_shape)
        self.self_attention_norm.build(x_shape)
        if self.use_cross_attention:
            self.cross_attention.build(x_shape, encoder_outputs_shape or x_shape)
            self.cross_attention_norm.build(x_shape)
        self.feed_forward.build(x_shape)
        self.feed_forward_norm.build(x_shape)
        self.built = True

    def call(self, x, encoder_outputs=None, padding_mask=None, encoder_padding_mask=None,
             positions=None, training=None):
        self._check_encoder_outputs(encoder_outputs)

        def attend_to_self(h):
            h = self.self_attention(h, attention_mask=_keys(padding_mask), use_causal_mask=True,
                                    positions=positions, training=training)
            return self.self_attention_dropout(h, training=training)

        x = self.residual(x, attend_to_self, self.self_attention_norm)  # (B, T, D)
        return self._cross_attention_and_feed_forward(x, encoder_outputs, encoder_padding_mask,
                                                      training)

    def call_with_cache(self, x, cache, cache_index, encoder_outputs=None, padding_mask=None,
                        encoder_padding_mask=None, positions=None, encoder_key_values=None):
        if encoder_key_values is None:
            self._check_encoder_outputs(encoder_outputs)
        x, cache = self.residual_with_cache(
            x, lambda h: self.self_attention.call_with_cache(
                h, cache, cache_index, attention_mask=_keys(padding_mask), positions=positions),
            self.self_attention_norm)  # (B, t, D)
        return self._cross_attention_and_feed_forward(
            x, encoder_outputs, encoder_padding_mask, encoder_key_values=encoder_key_values), cache

    def encoder_key_values(self, encoder_outputs):
        """The cross-attention's keys and values of `encoder_outputs` (B, S, D), projected
        once for a whole decode: (B, 2, H, S, Dh)."""
        self._check_encoder_outputs(encoder_outputs)
        if not self.use_cross_attention:
            raise ValueError(f"{self.name} has no cross-attention: it reads no encoder.")
        return self.cross_attention.key_values(encoder_outputs)

    def _cross_attention_and_feed_forward(self, x, encoder_outputs, encoder_padding_mask,
                                          training=None, encoder_key_values=None):
        if self.use_cross_attention:
            def attend_to_encoder(h):
                mask = _keys(encoder_padding_mask)
                if encoder_key_values is None:
                    h = self.cross_attention(h, encoder_outputs, attention_mask=mask,
                                             training=training)
                else:
                    h = self.cross_attention.call_with_key_values(h, encoder_key_values,
                                                                  attention_mask=mask)
                return self.cross_attention_dropout(h, training=training)

            x = self.residual(x, attend_to_encoder, self.cross_attention_norm)  # (B, T, D)
        return self.residual(x, lambda h: self.feed_forward(h, training=training),
                             self.feed_forward_norm)                          # (B, T, D)

    def attention_weights(self, x, encoder_outputs=None, padding_mask=None,
                          encoder_padding_mask=None, positions=None):
        self._check_encoder_outputs(encoder_outputs)
        weights = {"self_attention": self.self_attention.attention_weights(
            self.sublayer_input(x, self.self_attention_norm),
            attention_mask=_keys(padding_mask), use_causal_mask=True, positions=positions)}
        if self.use_cross_attention:
            x = self.residual(x, lambda h: self.self_attention(
                h, attention_mask=_keys(padding_mask), use_causal_mask=True,
                positions=positions), self.self_attention_norm)
            weights["cross_attention"] = self.cross_attention.attention_weights(
                self.sublayer_input(x, self.cross_attention_norm), encoder_outputs,
                attention_mask=_keys(encoder_padding_mask))
        return weights

    def _check_encoder_outputs(self, encoder_outputs):
        if self.use_cross_attention and encoder_outputs is None:
            raise ValueError(f"{self.name} has cross-attention: pass `encoder_outputs`.")

    def get_config(self):
        return {**super().get_config(), "use_cross_attention": self.use_cross_attention}


def _keys(padding_mask):
    """A (B, Tk) token mask as an attention mask over keys, or None."""
    return None if padding_mask is None else key_padding_mask(padding_mask)


@keras.saving.register_keras_serializable(package="llm_tf")
class TransformerDecoder(TransformerStack):
    """Embedding (× √D) + sinusoidal positions + `num_layers` decoder layers.

    The target-side twin of `TransformerEncoder`, attending to its outputs; with
    `use_cross_attention=False`, a GPT decoder (what `TransformerLM` is built on).

    Args:
        target_vocab_size: V of the target tokens.
        use_cross_attention: give every layer encoder–decoder attention.
        Others: see `TransformerStack`.

    Call arguments:
        token_ids: int (B, T); with a cache (`call_with_cache(token_ids, cache,
            cache_index, ...)`), the t new tokens (B, t).
        encoder_outputs: (B, S, D); required with cross-attention.
        encoder_padding_mask: optional bool (B, S), True = real source token.
        padding_mask: optional bool over self-attention keys; (B, T) by default
            `token_ids != pad_id` (uncached), (B, T_max) over cache slots.
        positions: optional int (T,) or (B, T).
        training: enables dropout.

    Returns:
        (B, T, D); `call_with_cache` returns ((B, t, D), cache), the cache a tuple
        of L tensors (B, 2, H, T_max, Dh) from `init_cache(B, T_max)`.
    """

    def __init__(self, num_layers, d_model, num_heads, dff, target_vocab_size,
                 use_cross_attention=True, **kwargs):
        super().__init__(num_layers, d_model, num_heads, dff, target_vocab_size,
                         block_class=DecoderLayer,
                         block_options={"use_cross_attention": use_cross_attention}, **kwargs)
        self.target_vocab_size = target_vocab_size
        self.use_cross_attention = use_cross_attention

    def build(self, token_ids_shape, encoder_outputs_shape=None):
        if self.use_cross_attention and encoder_outputs_shape is None:
            encoder_outputs_shape = tuple(token_ids_shape) + (self.d_model,)
        self._build(token_ids_shape,
                    *(() if encoder_outputs_shape is None else (encoder_outputs_shape,)))

    def call(self, token_ids, encoder_outputs=None, encoder_padding_mask=None, padding_mask=None,
             positions=None, training=None):
        return super().call(token_ids, padding_mask=padding_mask, positions=positions,
                            training=training, **self._context(encoder_outputs,
                                                               encoder_padding_mask))

    def call_with_cache(self, token_ids, cache, cache_index, encoder_outputs=None,
                        encoder_padding_mask=None, padding_mask=None, positions=None,
                        encoder_key_values=None):
        """See the class docstring; `encoder_key_values` (a tuple of L tensors (B, 2, H, S,
        Dh) from `encoder_key_values(encoder_outputs)`) replaces `encoder_outputs`."""
        if encoder_key_values is None:
            return super().call_with_cache(
                token_ids, cache, cache_index, padding_mask=padding_mask, positions=positions,
                **self._context(encoder_outputs, encoder_padding_mask))
        return super().call_with_cache(
            token_ids, cache, cache_index, padding_mask=padding_mask, positions=positions,
            block_inputs={"encoder_key_values": encoder_key_values},
            encoder_padding_mask=encoder_padding_mask)

    def encoder_key_values(self, encoder_outputs):
        """Every layer's cross-attention keys and values of `encoder_outputs` (B, S, D): a
        tuple of L tensors (B, 2, H, S, Dh), computed once per source and read at every
        decoding step (`call_with_cache(..., encoder_key_values=...)`)."""
        return tuple(block.encoder_key_values(encoder_outputs) for block in self.blocks)

    def attention_weights(self, token_ids, encoder_outputs=None, encoder_padding_mask=None,
                          padding_mask=None, positions=None):
        return super().attention_weights(token_ids, padding_mask=padding_mask,
                                         positions=positions,
                                         **self._context(encoder_outputs, encoder_padding_mask))

    def _context(self, encoder_outputs, encoder_padding_mask):
        """The cross-attention inputs the blocks take (none without cross-attention)."""
        if not self.use_cross_attention:
            return {}
        return {"encoder_outputs": encoder_outputs, "encoder_padding_mask": encoder_padding_mask}

    def get_config(self):
        return {**super().get_config(), "target_vocab_size": self.target_vocab_size,
                "use_cross_attention": self.use_cross_attention}
