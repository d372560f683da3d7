"""What encoder and decoder layers share: arguments, sublayer factories and the residual rule.

The residual connection adds a sublayer's **input** to its output. The design
document's §4.2–4.3 writes `layer_norm(outputs + outputs)`, which doubles the
sublayer output and drops the skip path; the paper (and this code) computes

    post-LN (paper, document):           x = LayerNorm(x + Sublayer(x))
    pre-LN  (GPT-2, default for the LM): x = x + Sublayer(LayerNorm(x))

where Sublayer includes its output dropout. Pre-LN keeps an identity path from
input to output, trains without warm-up tricks, and needs a final LayerNorm
after the stack (`TransformerStack` adds it).

Every block has the same three entry points as `MultiHeadAttention`, each with
one return shape: `call(x, ...) -> x`, `call_with_cache(x, cache, cache_index,
...) -> (x, cache)` and `attention_weights(x, ...) -> {sublayer name: weights}`.
"""

import keras

from llm_tf._validation import check_choice, check_divisible, check_positive, check_rate
from llm_tf.config import NORM_PLACEMENTS
from llm_tf.layers.attention import MultiHeadAttention
from llm_tf.layers.feed_forward import FeedForward
from llm_tf.layers.initializers import clone_initializer


class TransformerBlock(keras.layers.Layer):
    """Base of `EncoderLayer` and `DecoderLayer`: holds and validates their common arguments.

    Args:
        d_model: D.
        num_heads: H; D must be divisible by H.
        dff: F, feed-forward hidden width.
        dropout: rate for attention weights and every sublayer output.
        norm_placement: "post" (the paper) or "pre" (GPT-2).
        activation: feed-forward activation, "relu", "gelu" or "gelu_tanh".
        use_bias: biases in Dense layers and LayerNorms.
        layer_norm_epsilon: LayerNorm epsilon.
        rotary_max_wavelength: RoPE base for self-attention, or None.
        kernel_initializer: initializer of input-side projections.
        output_kernel_initializer: initializer of the projections that write into
            the residual stream (attention output, second FFN layer).
    """

    def __init__(self, d_model, num_heads, dff, dropout=0.1, norm_placement="post",
                 activation="relu", use_bias=True, layer_norm_epsilon=1e-5,
                 rotary_max_wavelength=None, kernel_initializer="glorot_uniform",
                 output_kernel_initializer=None, **kwargs):
        super().__init__(**kwargs)
        check_divisible(d_model, num_heads)
        check_positive("dff", dff)
        check_rate("dropout", dropout)
        check_choice("norm_placement", norm_placement, NORM_PLACEMENTS)
        self.d_model = d_model
        self.num_heads = num_heads
        self.dff = dff
        self.dropout = dropout
        self.norm_placement = norm_placement
        self.activation = activation
        self.use_bias = use_bias
        self.layer_norm_epsilon = layer_norm_epsilon
        self.rotary_max_wavelength = rotary_max_wavelength
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.output_kernel_initializer = keras.initializers.get(
            output_kernel_initializer or kernel_initializer)

    # -- sublayers, made alike for every block ------------------------------------

    def _attention(self, name, rotary):
        return MultiHeadAttention(
            self.d_model, self.num_heads, dropout=self.dropout, use_bias=self.use_bias,
            rotary_max_wavelength=self.rotary_max_wavelength if rotary else None,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            output_kernel_initializer=clone_initializer(self.output_kernel_initializer),
            name=name, dtype=self.dtype_policy)

    def _feed_forward(self):
        return FeedForward(
            self.d_model, self.dff, activation=self.activation, dropout=self.dropout,
            use_bias=self.use_bias, kernel_initializer=clone_initializer(self.kernel_initializer),
            output_kernel_initializer=clone_initializer(self.output_kernel_initializer),
            name="feed_forward", dtype=self.dtype_policy)

    def _norm(self, name):
        return keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, center=self.use_bias, name=name,
            dtype=self.dtype_policy)

    def _dropout(self):
        return keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)

    # -- the residual rule ----------------------------------------------------------

    def residual(self, x, sublayer, norm):
        """x + Sublayer(x), with the LayerNorm where `norm_placement` puts it.

        Args:
            x: (B, T, D), the sublayer's input: this is what the residual adds.
            sublayer: callable (B, T, D) -> (B, T, D), including its dropout.
            norm: the LayerNormalization of this sublayer.
        """
        if self.norm_placement == "pre":
            return x + sublayer(norm(x))   # GPT-2
        return norm(x + sublayer(x))       # the paper

    def residual_with_cache(self, x, sublayer, norm):
        """`residual` for a sublayer that also returns its updated cache: -> (x, cache)."""
        if self.norm_placement == "pre":
            out, cache = sublayer(norm(x))
            return x + out, cache
        out, cache = sublayer(x)
        return norm(x + out), cache

    def sublayer_input(self, x, norm):
        """What a sublayer reads: LayerNorm(x) in a pre-LN block, x in a post-LN one."""
        return norm(x) if self.norm_placement == "pre" else x

    def compute_output_shape(self, input_shape, *args, **kwargs):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "d_model": self.d_model,
            "num_heads": self.num_heads,
            "dff": self.dff,
            "dropout": self.dropout,
            "norm_placement": self.norm_placement,
            "activation": self.activation,
            "use_bias": self.use_bias,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "rotary_max_wavelength": self.rotary_max_wavelength,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "output_kernel_initializer": keras.initializers.serialize(
                self.output_kernel_initializer),
        }
