"""The Transformer decoder (design document §3.3 and §4.3; Vaswani et al. 2017, §3.1)."""

import keras
import tensorflow as tf

from llm_tf.layers.block import TransformerBlock
from llm_tf.layers.masks import key_padding_mask
from llm_tf.layers.masks import padding_mask as token_padding_mask
from llm_tf.layers.stack import TransformerStack


@keras.saving.register_keras_serializable(package="llm_tf")
class DecoderLayer(TransformerBlock):
    """Causal self-attention, cross-attention to the encoder, feed-forward.

    The document's `decoder_layer` (§4.3) with its two bugs fixed: each residual
    adds the sublayer's input (not `outputs + outputs`), and cross-attention is
    masked by the *encoder's* padding, not by the decoder's own mask. With
    `use_cross_attention=False` this is a GPT block, the unit of `TransformerLM`.

    Args:
        use_cross_attention: build the encoder–decoder attention sublayer.
        Others: see `TransformerBlock`.

    Call arguments:
        x: (B, T, D) — or the t new positions (B, t, D) when decoding with a cache.
        encoder_outputs: (B, S, D); required with cross-attention.
        padding_mask: optional bool over the self-attention keys, True = real
            token: (B, T), or (B, T_max) over the cache slots when decoding.
        encoder_padding_mask: optional bool (B, S) over the encoder outputs.
        positions: int (t,) or (B, t), positions of `x` for rotary encoding.
        cache: (B, 2, H, T_max, Dh) self-attention keys and values so far.
        cache_index: int scalar, position of x[:, 0] in the cache.
        training: enables dropout.
        return_attention_scores: also return {"self_attention": (B, H, T, Tk),
            "cross_attention": (B, H, T, S)} weights.

    Returns:
        (B, T, D); then the updated cache if `cache` was given; then the
        attention weights if asked for.
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
             positions=None, cache=None, cache_index=None, training=None,
             return_attention_scores=False):
        if self.use_cross_attention and encoder_outputs is None:
            raise ValueError(f"{self.name} has cross-attention: pass `encoder_outputs`.")
        scores = {}
        new_cache = []

        def attend_to_self(h):
            outputs = self.self_attention(
                h, attention_mask=None if padding_mask is None else key_padding_mask(padding_mask),
                use_causal_mask=True, positions=positions, cache=cache, cache_index=cache_index,
                training=training, return_attention_scores=return_attention_scores)
            outputs = outputs if isinstance(outputs, tuple) else (outputs,)
            if cache is not None:
                new_cache.append(outputs[1])
            if return_attention_scores:
                scores["self_attention"] = outputs[-1]
            return self.self_attention_dropout(outputs[0], training=training)

        def attend_to_encoder(h):
            mask = (None if encoder_padding_mask is None
                    else key_padding_mask(encoder_padding_mask))
            outputs = self.cross_attention(
                h, encoder_outputs, attention_mask=mask, training=training,
                return_attention_scores=return_attention_scores)
            if return_attention_scores:
                outputs, scores["cross_attention"] = outputs
            return self.cross_attention_dropout(outputs, training=training)

        x = self.residual(x, attend_to_self, self.self_attention_norm)  # (B, T, D)
        if self.use_cross_attention:
            x = self.residual(x, attend_to_encoder, self.cross_attention_norm)
        x = self.residual(x, lambda h: self.feed_forward(h, training=training),
                          self.feed_forward_norm)

        results = (x,)
        if cache is not None:
            results += (new_cache[0],)
        if return_attention_scores:
            results += (scores,)
        return results[0] if len(results) == 1 else results

    def get_config(self):
        return {**super().get_config(), "use_cross_attention": self.use_cross_attention}


@keras.saving.register_keras_serializable(package="llm_tf")
class TransformerDecoder(TransformerStack):
    """Embedding (× √D) + sinusoidal positions + `num_layers` decoder layers.

    The target-side twin of `TransformerEncoder`, attending to its outputs.

    Args:
        target_vocab_size: V of the target tokens.
        Others: see `TransformerStack`.

    Call arguments:
        token_ids: int (B, T); with a cache, the t new tokens (B, t).
        encoder_outputs: (B, S, D).
        encoder_padding_mask: optional bool (B, S), True = real source token.
        padding_mask: optional bool over self-attention keys; (B, T) by default
            `token_ids != pad_id` (uncached), (B, T_max) over cache slots.
        cache: optional (L, B, 2, H, T_max, Dh), one slice per layer.
        cache_index: int scalar, position of token_ids[:, 0].
        training: enables dropout.
        return_attention_scores: also return a list with each layer's weights.

    Returns:
        (B, T, D); then the updated cache if given; then the weights if asked for.
    """

    def __init__(self, num_layers, d_model, num_heads, dff, target_vocab_size, **kwargs):
        super().__init__(num_layers, d_model, num_heads, dff, target_vocab_size, **kwargs)
        self.target_vocab_size = target_vocab_size
        self.decoder_layers = [
            DecoderLayer(d_model, num_heads, dff, use_cross_attention=True,
                         name=f"decoder_layer_{i}", **self.block_arguments())
            for i in range(num_layers)]

    def build(self, token_ids_shape, encoder_outputs_shape=None):
        hidden_shape = tuple(token_ids_shape) + (self.d_model,)
        self.build_stack(token_ids_shape, self.decoder_layers,
                         encoder_outputs_shape or hidden_shape)

    def call(self, token_ids, encoder_outputs, encoder_padding_mask=None, padding_mask=None,
             cache=None, cache_index=None, training=None, return_attention_scores=False):
        positions = None
        if cache is not None:
            positions = cache_index + tf.range(tf.shape(token_ids)[1])  # (t,)
        elif padding_mask is None:
            padding_mask = token_padding_mask(token_ids, self.pad_id)
        x = self.embedding(token_ids, positions=positions, training=training)  # (B, T, D)
        caches, scores = [], []
        for i, layer in enumerate(self.decoder_layers):
            outputs = layer(
                x, encoder_outputs, padding_mask=padding_mask,
                encoder_padding_mask=encoder_padding_mask,
                cache=None if cache is None else cache[i], cache_index=cache_index,
                training=training, return_attention_scores=return_attention_scores)
            outputs = outputs if isinstance(outputs, tuple) else (outputs,)
            x = outputs[0]
            if cache is not None:
                caches.append(outputs[1])
            if return_attention_scores:
                scores.append(outputs[-1])
        results = (self.normalize_output(x),)
        if cache is not None:
            results += (tf.stack(caches),)
        if return_attention_scores:
            results += (scores,)
        return results[0] if len(results) == 1 else results

    def get_config(self):
        return {**super().get_config(), "target_vocab_size": self.target_vocab_size}
