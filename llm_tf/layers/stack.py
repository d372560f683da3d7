"""The stack: token ids -> embedding -> L blocks -> final LayerNorm, the one implementation
behind `TransformerEncoder`, `TransformerDecoder` and the decoder-only `TransformerLM`.

    x = embedding(token_ids)              # (B, T, D): tokens (× √D) + positions, dropout
    for block in blocks:                  # L × EncoderLayer or DecoderLayer
        x = block(x, ...)                 # (B, T, D)
    x = final_norm(x)                     # pre-LN stacks only; post-LN blocks end in one

`call_with_cache` is the same loop for t new tokens, threading each block's
key/value cache through; `attention_weights` runs it once more to collect every
block's weights for plots.
"""

import keras
import tensorflow as tf

from llm_tf._validation import check_positive
from llm_tf.layers.embedding import TokenAndPositionEmbedding
from llm_tf.layers.masks import padding_mask as token_padding_mask

# RoFormer's and Llama's base of the rotary frequencies.
ROPE_MAX_WAVELENGTH = 10000.0


class TransformerStack(keras.layers.Layer):
    """Base of the encoder and decoder stacks (the paper's two; GPT's one).

    Subclasses choose the block (`block_class`, `block_options`) and name the
    vocabulary argument; everything else is here.

    Args:
        num_layers: L, number of blocks.
        d_model: D.
        num_heads: H.
        dff: F.
        vocab_size: V of the tokens this stack reads.
        maximum_position_encoding: the longest sequence accepted (rows of the
            position table; the document uses 10000).
        dropout_rate: dropout everywhere.
        norm_placement: "post" (the paper, the document) or "pre" (adds a final
            LayerNorm).
        activation: feed-forward activation.
        pad_id: token id whose positions are hidden from attention when no
            `padding_mask` is given (uncached calls); None: no automatic mask.
        layer_norm_epsilon: LayerNorm epsilon.
        position_encoding: "sinusoidal" (the paper), "learned" (GPT-2) or "rope".
        scale_embeddings: multiply token vectors by √D (the paper §3.4).
        use_bias: biases in Dense layers and LayerNorms.
        embeddings_initializer: token (and learned position) tables.
        kernel_initializer: input-side projections.
        output_kernel_initializer: projections that write into the residual stream.
        block_class: the block type, `EncoderLayer` or `DecoderLayer` (subclasses).
        block_options: further keyword arguments of every block.
        embedding: optional `TokenAndPositionEmbedding` to use instead of making one, so
            that two stacks share one token table (a translation model with one vocabulary
            for both languages, the paper's §3.4). Not part of `get_config`: the model
            that shares it rebuilds the sharing.
    """

    def __init__(self, num_layers, d_model, num_heads, dff, vocab_size,
                 maximum_position_encoding=10000, dropout_rate=0.1, norm_placement="post",
                 activation="relu", pad_id=0, layer_norm_epsilon=1e-5,
                 position_encoding="sinusoidal", scale_embeddings=True, use_bias=True,
                 embeddings_initializer="uniform", kernel_initializer="glorot_uniform",
                 output_kernel_initializer=None, *, block_class, block_options=None,
                 embedding=None, **kwargs):
        super().__init__(**kwargs)
        check_positive("num_layers", num_layers)
        self.num_layers = num_layers
        self.d_model = d_model
        self.num_heads = num_heads
        self.dff = dff
        self.vocab_size = vocab_size
        self.maximum_position_encoding = maximum_position_encoding
        self.dropout_rate = dropout_rate
        self.norm_placement = norm_placement
        self.activation = activation
        self.pad_id = pad_id
        self.layer_norm_epsilon = layer_norm_epsilon
        self.position_encoding = position_encoding
        self.scale_embeddings = scale_embeddings
        self.use_bias = use_bias
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.output_kernel_initializer = keras.initializers.get(
            output_kernel_initializer or kernel_initializer)
        self.embedding = embedding or TokenAndPositionEmbedding(
            vocab_size, d_model, maximum_position_encoding, position_encoding=position_encoding,
            scale_embeddings=scale_embeddings, dropout=dropout_rate,
            embeddings_initializer=self.embeddings_initializer, name="embedding",
            dtype=self.dtype_policy)
        rotary = ROPE_MAX_WAVELENGTH if position_encoding == "rope" else None
        self.blocks = [
            block_class(d_model, num_heads, dff, dropout=dropout_rate,
                        norm_placement=norm_placement, activation=activation, use_bias=use_bias,
                        layer_norm_epsilon=layer_norm_epsilon, rotary_max_wavelength=rotary,
                        kernel_initializer=self.kernel_initializer,
                        output_kernel_initializer=self.output_kernel_initializer,
                        name=f"block_{i}", dtype=self.dtype_policy, **(block_options or {}))
            for i in range(num_layers)]
        # Post-LN blocks already end in a LayerNorm; pre-LN ones need a last one.
        # Set by a trainer (`TrainStep(recompute=True)`), not part of the architecture: each
        # block's activations are recomputed in the backward pass (`tf.recompute_grad`).
        self._recompute = False
        self.final_norm = (keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, center=use_bias, name="final_norm",
            dtype=self.dtype_policy) if norm_placement == "pre" else None)

    def build(self, token_ids_shape):
        self._build(token_ids_shape)

    def _build(self, token_ids_shape, *context):
        """Builds every sublayer; `context` = the blocks' other input shapes (Keras wants
        `build`'s arguments to be `call`'s, so each subclass's `build` names its own)."""
        hidden_shape = tuple(token_ids_shape) + (self.d_model,)
        if not self.embedding.built:  # a shared embedding may be built by the other stack
            self.embedding.build(token_ids_shape)
        for block in self.blocks:
            block.build(hidden_shape, *context)
        if self.final_norm is not None:
            self.final_norm.build(hidden_shape)
        self.built = True

    def _masks(self, token_ids, padding_mask):
        if padding_mask is None and self.pad_id is not None:
            return token_padding_mask(token_ids, self.pad_id)  # (B, T)
        return padding_mask

    def _normalize_output(self, x):
        return x if self.final_norm is None else self.final_norm(x)

    def call(self, token_ids, padding_mask=None, positions=None, training=None,
             **context):
        """token_ids int (B, T) -> (B, T, D).

        Args:
            padding_mask: optional bool (B, T), True = real token; default
                `token_ids != pad_id` (or none when `pad_id` is None).
            positions: optional int (T,) or (B, T); default range(T).
            training: enables dropout.
            **context: the blocks' other inputs (`encoder_outputs`,
                `encoder_padding_mask` for a decoder with cross-attention).
        """
        padding_mask = self._masks(token_ids, padding_mask)
        x = self.embedding(token_ids, positions=positions, training=training)  # (B, T, D)
        for block in self.blocks:
            def run(h, block=block):
                return block(h, padding_mask=padding_mask, positions=positions,
                             training=training, **context)  # (B, T, D)
            x = tf.recompute_grad(run)(x) if self._recompute and training else run(x)
        return self._normalize_output(x)

    @property
    def recompute(self) -> bool:
        """Whether training recomputes each block's activations in the backward pass (less
        memory for about a third more compute). Needs dropout 0: the recomputed forward
        pass would draw other dropout masks."""
        return self._recompute

    @recompute.setter
    def recompute(self, value: bool):
        if value and self.dropout_rate > 0:
            raise ValueError("Recomputing activations (`recompute`) needs dropout 0: the "
                             "recomputed pass would draw other dropout masks. Received: "
                             f"dropout={self.dropout_rate}")
        self._recompute = bool(value)

    def call_with_cache(self, token_ids, cache, cache_index, padding_mask=None, positions=None,
                        block_inputs=None, **context):
        """Runs t new tokens against the key/value cache: -> ((B, t, D), cache).

        Args:
            token_ids: int (B, t), the tokens at cache slots [cache_index, cache_index + t).
            cache: a tuple of L per-layer tensors (B, 2, H, T_max, Dh), from
                `init_cache` or a previous call. (One tensor per layer: in a decode
                loop under XLA each is updated in place, where one stacked tensor
                would be copied whole every step.)
            cache_index: int scalar, slot of token_ids[:, 0].
            padding_mask: optional bool (B, T_max) over cache slots, False for slots
                never to be attended (left padding).
            positions: optional int (t,) or (B, t); default cache_index + range(t).
            block_inputs: optional {argument name: a sequence of L values}, block i getting
                value i (each layer's own precomputed cross-attention keys and values).
            **context: as in `call`.
        """
        if positions is None:
            positions = cache_index + tf.range(tf.shape(token_ids)[1])  # (t,)
        x = self.embedding(token_ids, positions=positions)  # (B, t, D)
        new_cache = []
        block_inputs = block_inputs or {}
        for i, (block, block_cache) in enumerate(zip(self.blocks, cache)):
            own = {name: values[i] for name, values in block_inputs.items()}
            x, block_cache = block.call_with_cache(x, block_cache, cache_index,
                                                   padding_mask=padding_mask,
                                                   positions=positions, **context, **own)
            new_cache.append(block_cache)
        return self._normalize_output(x), tuple(new_cache)  # (B, t, D), L × (B, 2, H, T_max, Dh)

    def init_cache(self, batch_size, max_length=None, dtype=None):
        """A zero cache: a tuple of L tensors (B, 2, H, max_length, Dh) in the compute dtype.

        Args:
            max_length: T_max, the cache length; default `maximum_position_encoding`.
        """
        max_length = self.maximum_position_encoding if max_length is None else max_length
        if not (isinstance(max_length, int) and 0 < max_length <= self.maximum_position_encoding):
            raise ValueError(
                "`max_length` must be an integer in [1, maximum_position_encoding="
                f"{self.maximum_position_encoding}]. Received: max_length={max_length!r}")
        shape = (batch_size, 2, self.num_heads, max_length, self.d_model // self.num_heads)
        return tuple(tf.zeros(shape, dtype=dtype or self.compute_dtype)
                     for _ in range(self.num_layers))

    def attention_weights(self, token_ids, padding_mask=None, positions=None, **context):
        """Every block's attention weights, for plots: a list of L dicts
        {"self_attention": (B, H, T, T)[, "cross_attention": (B, H, T, S)]}."""
        padding_mask = self._masks(token_ids, padding_mask)
        x = self.embedding(token_ids, positions=positions)
        weights = []
        for block in self.blocks:
            weights.append(block.attention_weights(x, padding_mask=padding_mask,
                                                   positions=positions, **context))
            x = block(x, padding_mask=padding_mask, positions=positions, **context)
        return weights

    def compute_output_shape(self, token_ids_shape, *args, **kwargs):
        return tuple(token_ids_shape) + (self.d_model,)

    def get_config(self):
        return {
            **super().get_config(),
            "num_layers": self.num_layers,
            "d_model": self.d_model,
            "num_heads": self.num_heads,
            "dff": self.dff,
            "maximum_position_encoding": self.maximum_position_encoding,
            "dropout_rate": self.dropout_rate,
            "norm_placement": self.norm_placement,
            "activation": self.activation,
            "pad_id": self.pad_id,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "position_encoding": self.position_encoding,
            "scale_embeddings": self.scale_embeddings,
            "use_bias": self.use_bias,
            "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "output_kernel_initializer": keras.initializers.serialize(
                self.output_kernel_initializer),
        }
