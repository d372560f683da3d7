"""Scaled dot-product attention and multi-head attention with a key/value cache.

The design document (§4.1) writes attention as

    Attention(Q, K, V) = softmax(Q Kᵀ / √d_k) V

and `scaled_dot_product_attention` is exactly that, with a boolean mask
(True = may attend). Scores, mask and softmax are computed in float32 whatever
the compute dtype, so under mixed precision a large negative mask constant never
overflows float16 and the softmax keeps its precision.
"""

import math

import keras
import tensorflow as tf

from llm_tf._validation import check_divisible, check_rate
from llm_tf.layers.initializers import clone_initializer
from llm_tf.layers.masks import causal_mask, combine_masks
from llm_tf.layers.position import apply_rotary

# Added to masked scores. Finite (unlike -inf) so that a row with every key
# masked gives a finite softmax, which is then zeroed; float32 holds it exactly.
_MASKED_SCORE = -1e9


def attention_weights(query, key, mask=None):
    """softmax(Q Kᵀ / √d_k) with a boolean mask, in float32.

    Args:
        query: (..., Tq, Dk).
        key: (..., Tk, Dk).
        mask: bool, broadcastable to (..., Tq, Tk); True = may attend.

    Returns:
        float32 (..., Tq, Tk); each row sums to 1, or is all zeros when its
        query may attend no key (never NaN).
    """
    query = tf.cast(query, tf.float32)
    key = tf.cast(key, tf.float32)
    scale = 1.0 / math.sqrt(key.shape[-1])
    scores = tf.matmul(query, key, transpose_b=True) * scale  # (..., Tq, Tk)
    if mask is None:
        return tf.nn.softmax(scores, axis=-1)
    mask = tf.cast(mask, tf.bool)
    weights = tf.nn.softmax(tf.where(mask, scores, _MASKED_SCORE), axis=-1)
    # Rows whose every key is masked came out uniform: make them attend nothing.
    return weights * tf.cast(mask, weights.dtype)


def scaled_dot_product_attention(query, key, value, mask=None):
    """softmax(Q Kᵀ / √d_k) V — the design document's equation, §4.1.

    Args:
        query: (..., Tq, Dk).
        key: (..., Tk, Dk).
        value: (..., Tk, Dv).
        mask: optional bool, broadcastable to (..., Tq, Tk); True = may attend.

    Returns:
        (output, attention_weights): output (..., Tq, Dv) in `query`'s dtype
        (computed in float32), attention_weights float32 (..., Tq, Tk).
    """
    weights = attention_weights(query, key, mask)
    output = tf.matmul(weights, tf.cast(value, tf.float32))  # (..., Tq, Dv)
    return tf.cast(output, query.dtype), weights


@keras.saving.register_keras_serializable(package="llm_tf")
class MultiHeadAttention(keras.layers.Layer):
    """Multi-head attention (Vaswani et al. 2017, §3.2.2) with an optional KV cache.

    Queries, keys and values are projected to D = H · Dh, split into H heads,
    attended per head with `attention_weights`, merged back and projected.

    Args:
        d_model: D, input and output width.
        num_heads: H; `d_model` must be divisible by it.
        dropout: rate applied to the attention weights while training.
        use_bias: biases in the four projections.
        rotary_max_wavelength: if set, queries and keys are rotated with RoPE
            (`apply_rotary`) using this base; None for no rotation.
        kernel_initializer: initializer of the Q, K, V projection kernels.
        output_kernel_initializer: initializer of the output projection kernel
            (GPT-2 scales it down with depth); defaults to `kernel_initializer`.

    Call arguments (in Keras' order, query-value-key, so this layer is a drop-in
    for `keras.layers.MultiHeadAttention`; the document writes Attention(Q, K, V)):
        query: (B, Tq, D).
        value: (B, Tk, D); defaults to `query` (self-attention).
        key: (B, Tk, D); defaults to `value`.
        attention_mask: bool broadcastable to (B, Tq, Tk), True = may attend.
            With a cache, Tk is the cache length.
        use_causal_mask: AND the mask with a causal one (offset by `cache_index`
            when decoding with a cache).
        positions: int (Tq,) or (B, Tq), positions of the queries (and of the new
            keys) for rotary encoding; default `cache_index + range(Tq)`.
        cache: (B, 2, H, T_max, Dh) keys and values of earlier positions, for
            self-attention during incremental decoding; the new keys and values
            are written at `cache_index` and attention runs over all T_max slots
            (slots not yet written must be masked; `use_causal_mask` does it).
        cache_index: int scalar, position of the first query in the cache.
        training: enables dropout.
        return_attention_scores: also return the weights (B, H, Tq, Tk).

    Returns:
        output (B, Tq, D); then the updated cache if `cache` was given; then
        the attention weights if asked for.
    """

    def __init__(self, d_model, num_heads, dropout=0.0, use_bias=True,
                 rotary_max_wavelength=None, kernel_initializer="glorot_uniform",
                 output_kernel_initializer=None, bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        check_divisible(d_model, num_heads)
        check_rate("dropout", dropout)
        if rotary_max_wavelength is not None and (d_model // num_heads) % 2:
            raise ValueError("Rotary encoding needs an even head width d_model / num_heads. "
                             f"Received: d_model={d_model}, num_heads={num_heads}")
        self.d_model = d_model
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.dropout = dropout
        self.use_bias = use_bias
        self.rotary_max_wavelength = rotary_max_wavelength
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.output_kernel_initializer = keras.initializers.get(
            output_kernel_initializer or kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

        def projection(name, initializer):
            return keras.layers.Dense(d_model, use_bias=use_bias,
                                      kernel_initializer=clone_initializer(initializer),
                                      bias_initializer=clone_initializer(self.bias_initializer),
                                      name=name, dtype=self.dtype_policy)

        self.query_dense = projection("query", self.kernel_initializer)
        self.key_dense = projection("key", self.kernel_initializer)
        self.value_dense = projection("value", self.kernel_initializer)
        self.output_dense = projection("attention_output", self.output_kernel_initializer)
        # Attention weights stay float32 (see `attention_weights`), dropout too.
        self.weights_dropout = keras.layers.Dropout(dropout, dtype="float32")

    def build(self, query_shape, value_shape=None, key_shape=None):
        value_shape = value_shape or query_shape
        self.query_dense.build(query_shape)
        self.key_dense.build(key_shape or value_shape)
        self.value_dense.build(value_shape)
        self.output_dense.build(tuple(query_shape[:-1]) + (self.d_model,))
        self.built = True

    def _split_heads(self, x):
        batch, length = tf.shape(x)[0], tf.shape(x)[1]
        x = tf.reshape(x, (batch, length, self.num_heads, self.head_dim))  # (B, T, H, Dh)
        return tf.transpose(x, (0, 2, 1, 3))  # (B, H, T, Dh)

    def _merge_heads(self, x):
        batch, length = tf.shape(x)[0], tf.shape(x)[2]
        x = tf.transpose(x, (0, 2, 1, 3))  # (B, T, H, Dh)
        return tf.reshape(x, (batch, length, self.d_model))  # (B, T, D)

    def call(self, query, value=None, key=None, attention_mask=None, use_causal_mask=False,
             positions=None, cache=None, cache_index=None, training=None,
             return_attention_scores=False):
        value = query if value is None else value
        key = value if key is None else key
        if cache is not None and cache_index is None:
            raise ValueError("`cache_index` is required when a `cache` is given.")
        offset = 0 if cache_index is None else cache_index
        query_length = tf.shape(query)[1]

        q = self._split_heads(self.query_dense(query))  # (B, H, Tq, Dh)
        k = self._split_heads(self.key_dense(key))  # (B, H, Tk_new, Dh)
        v = self._split_heads(self.value_dense(value))  # (B, H, Tk_new, Dh)
        if self.rotary_max_wavelength is not None:
            if positions is None:
                positions = tf.range(query_length) + tf.cast(offset, tf.int32)
            q = apply_rotary(q, positions, self.rotary_max_wavelength)
            k = apply_rotary(k, positions, self.rotary_max_wavelength)

        if cache is not None:
            # Write the new keys/values at [cache_index, cache_index + Tq) with a
            # static-shape update, so the decode loop compiles once under XLA.
            update = tf.stack([k, v], axis=1)  # (B, 2, H, Tq, Dh)
            zero = tf.zeros((), tf.int32)
            cache = keras.ops.slice_update(
                cache, [zero, zero, zero, tf.cast(cache_index, tf.int32), zero],
                tf.cast(update, cache.dtype))
            k, v = cache[:, 0], cache[:, 1]  # (B, H, T_max, Dh)

        if attention_mask is not None and attention_mask.shape.rank == 3:
            attention_mask = attention_mask[:, None, :, :]  # (B, 1, Tq, Tk): same for all heads
        if use_causal_mask:
            attention_mask = combine_masks(
                attention_mask, causal_mask(query_length, tf.shape(k)[2], offset))

        weights = attention_weights(q, k, attention_mask)  # (B, H, Tq, Tk), float32
        weights = self.weights_dropout(weights, training=training)
        # The weighted sum runs in the compute dtype: the weights are already
        # normalised, so bfloat16/float16 lose nothing that matters here.
        context = tf.matmul(tf.cast(weights, v.dtype), v)  # (B, H, Tq, Dh)
        output = self.output_dense(self._merge_heads(context))  # (B, Tq, D)

        results = (output,)
        if cache is not None:
            results += (cache,)
        if return_attention_scores:
            results += (weights,)
        return results[0] if len(results) == 1 else results

    def compute_output_shape(self, query_shape, value_shape=None, key_shape=None):
        return query_shape

    def get_config(self):
        return {
            **super().get_config(),
            "d_model": self.d_model,
            "num_heads": self.num_heads,
            "dropout": self.dropout,
            "use_bias": self.use_bias,
            "rotary_max_wavelength": self.rotary_max_wavelength,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "output_kernel_initializer": keras.initializers.serialize(
                self.output_kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }
