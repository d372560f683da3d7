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

from llm_tf._validation import check_divisible, check_rate, check_rotary_head_width
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
    """Multi-head attention (Vaswani et al. 2017, §3.2.2) with a key/value cache.

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
        bias_initializer: initializer of the four biases.

    Three entry points, each with one return shape:

    * `call(query, value=None, key=None, ...) -> (B, Tq, D)` — the layer as Keras calls it.
      Arguments in Keras' order (query, value, key), so this layer is a drop-in for
      `keras.layers.MultiHeadAttention`; the document writes Attention(Q, K, V).
    * `call_with_cache(query, cache, cache_index, ...) -> ((B, Tq, D), cache)` — causal
      self-attention of Tq new positions against the keys and values of earlier ones.
    * `attention_weights(query, value=None, key=None, ...) -> (B, H, Tq, Tk)` — the
      softmax weights themselves, for plots (no dropout).

    and, for attention to a memory that does not change while decoding (the encoder's
    outputs read by cross-attention), the memory's keys and values projected once:

    * `key_values(value, key=None) -> (B, 2, H, Tk, Dh)`;
    * `call_with_key_values(query, key_values, ...) -> (B, Tq, D)` — `call` with those.

    Arguments shared by the three:
        query: (B, Tq, D).
        value: (B, Tk, D); defaults to `query` (self-attention).
        key: (B, Tk, D); defaults to `value`.
        attention_mask: bool broadcastable to (B, Tq, Tk), True = may attend. With a
            cache, Tk is the cache length T_max.
        use_causal_mask: AND the mask with a causal one.
        positions: int (Tq,) or (B, Tq), positions of the queries (and of the new keys)
            for rotary encoding; default `range(Tq)`, or `cache_index + range(Tq)`.
        training: enables dropout.
        cache: (B, 2, H, T_max, Dh) keys and values of earlier positions. The new keys
            and values are written at [cache_index, cache_index + Tq) and attention runs
            over all T_max slots; slots not yet written are hidden by the causal mask.
        cache_index: int scalar, position of the first query in the cache.
    """

    def __init__(self, d_model, num_heads, dropout=0.0, use_bias=True,
                 rotary_max_wavelength=None, kernel_initializer="glorot_uniform",
                 output_kernel_initializer=None, bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        check_divisible(d_model, num_heads)
        check_rate("dropout", dropout)
        if rotary_max_wavelength is not None:
            check_rotary_head_width(d_model, num_heads)
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

    # -- the three entry points ------------------------------------------------

    def call(self, query, value=None, key=None, attention_mask=None, use_causal_mask=False,
             positions=None, training=None):
        q, k, v = self._project(query, value, key, positions)
        mask = self._mask(attention_mask, use_causal_mask, q, k)
        return self._attend(q, k, v, mask, training)  # (B, Tq, D)

    def call_with_cache(self, query, cache, cache_index, attention_mask=None, positions=None,
                        training=None):
        q, k, v = self._project(query, query, query, positions, offset=cache_index)
        # Write the new keys/values at [cache_index, cache_index + Tq) with a static-shape
        # update, so the decode loop compiles once under XLA.
        update = tf.stack([k, v], axis=1)  # (B, 2, H, Tq, Dh)
        zero = tf.zeros((), tf.int32)
        cache = keras.ops.slice_update(
            cache, [zero, zero, zero, tf.cast(cache_index, tf.int32), zero],
            tf.cast(update, cache.dtype))
        k, v = cache[:, 0], cache[:, 1]  # (B, H, T_max, Dh)
        mask = self._mask(attention_mask, True, q, k, offset=cache_index)
        return self._attend(q, k, v, mask, training), cache

    def key_values(self, value, key=None):
        """Keys and values of a fixed memory `value` (B, Tk, D), projected once:
        (B, 2, H, Tk, Dh), the layout of a cache. A decoder's cross-attention reads the
        same encoder outputs at every step, so projecting them once saves 2·Tk·D² multiply-adds
        per step and layer."""
        if self.rotary_max_wavelength is not None:
            raise ValueError(f"{self.name} rotates keys by position (RoPE): their keys cannot be "
                             "projected once for every query position.")
        k = self._split_heads(self.key_dense(value if key is None else key))  # (B, H, Tk, Dh)
        v = self._split_heads(self.value_dense(value))                        # (B, H, Tk, Dh)
        return tf.stack([k, v], axis=1)                                       # (B, 2, H, Tk, Dh)

    def call_with_key_values(self, query, key_values, attention_mask=None, training=None):
        """`call(query, value)` with the memory's keys and values from `key_values(value)`:
        -> (B, Tq, D), the same numbers."""
        q = self._split_heads(self.query_dense(query))  # (B, H, Tq, Dh)
        k, v = key_values[:, 0], key_values[:, 1]        # (B, H, Tk, Dh)
        return self._attend(q, k, v, self._mask(attention_mask, False, q, k), training)

    def attention_weights(self, query, value=None, key=None, attention_mask=None,
                          use_causal_mask=False, positions=None):
        q, k, _ = self._project(query, value, key, positions)
        return attention_weights(q, k, self._mask(attention_mask, use_causal_mask, q, k))

    # -- the steps they share -----------------------------------------------------

    def _split_heads(self, x):
        batch, length = tf.shape(x)[0], tf.shape(x)[1]
        x = tf.reshape(x, (batch, length, self.num_heads, self.head_dim))  # (B, T, H, Dh)
        return tf.transpose(x, (0, 2, 1, 3))  # (B, H, T, Dh)

    def _merge_heads(self, x):
        batch, length = tf.shape(x)[0], tf.shape(x)[2]
        x = tf.transpose(x, (0, 2, 1, 3))  # (B, T, H, Dh)
        return tf.reshape(x, (batch, length, self.d_model))  # (B, T, D)

    def _project(self, query, value, key, positions, offset=0):
        """Q (B, H, Tq, Dh), K and V (B, H, Tk, Dh); rotated by position with RoPE."""
        value = query if value is None else value
        key = value if key is None else key
        q = self._split_heads(self.query_dense(query))
        k = self._split_heads(self.key_dense(key))
        v = self._split_heads(self.value_dense(value))
        if self.rotary_max_wavelength is not None:
            if positions is None:
                positions = tf.range(tf.shape(query)[1]) + tf.cast(offset, tf.int32)
            q = apply_rotary(q, positions, self.rotary_max_wavelength)
            k = apply_rotary(k, positions, self.rotary_max_wavelength)
        return q, k, v

    @staticmethod
    def _mask(attention_mask, use_causal_mask, q, k, offset=0):
        """The boolean mask broadcastable to (B, H, Tq, Tk), or None."""
        if attention_mask is not None and attention_mask.shape.rank == 3:
            attention_mask = attention_mask[:, None, :, :]  # (B, 1, Tq, Tk): same for all heads
        if use_causal_mask:
            attention_mask = combine_masks(
                attention_mask, causal_mask(tf.shape(q)[2], tf.shape(k)[2], offset))
        return attention_mask

    def _attend(self, q, k, v, mask, training):
        weights = attention_weights(q, k, mask)  # (B, H, Tq, Tk), float32
        weights = self.weights_dropout(weights, training=training)
        # The weighted sum runs in the compute dtype: the weights are already
        # normalised, so bfloat16/float16 lose nothing that matters here.
        context = tf.matmul(tf.cast(weights, v.dtype), v)  # (B, H, Tq, Dh)
        return self.output_dense(self._merge_heads(context))  # (B, Tq, D)

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
