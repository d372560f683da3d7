"""The decoder-only causal language model that the design document's §5 needs.

§5.1 pre-trains a `TransformerEncoder` as a language model. An encoder lets every
position see every other, so predicting token t+1 from position t would be
trivial: the model could read the answer. A language model needs *causal*
self-attention and no cross-attention — a stack of GPT blocks:

    ids (B, T) -> token embedding + positions -> L × DecoderLayer(causal, no cross)
               -> final LayerNorm (pre-LN) -> logits (B, T, V) in float32
"""

import math

import keras
import tensorflow as tf

from llm_tf.config import ModelConfig, model_config_from_preset
from llm_tf.layers.decoder import DecoderLayer
from llm_tf.layers.embedding import TokenAndPositionEmbedding
from llm_tf.layers.initializers import clone_initializer

# GPT-2 / nanoGPT initialisation: N(0, 0.02) everywhere, and the projections that
# write into the residual stream scaled by 1/sqrt(2L) so that the stream's
# variance does not grow with depth (GPT-2 paper, §2.3).
INIT_STDDEV = 0.02
ROPE_MAX_WAVELENGTH = 10000.0


@keras.saving.register_keras_serializable(package="llm_tf")
class TransformerLM(keras.Model):
    """Decoder-only Transformer language model (GPT-style).

    Args:
        config: a `ModelConfig` (or its dict form).

    Call arguments:
        token_ids: int (B, T), T <= config.max_length.
        padding_mask: optional bool (B, T), True = real token; pad positions are
            never attended to (used for left-padded batches of prompts).
        positions: optional int (T,) or (B, T); default range(T).
        training: enables dropout.

    Returns:
        logits (B, T, V), float32 whatever the compute dtype.

    Incremental decoding: `init_cache(B)` makes a zero cache and
    `call_with_cache(token_ids, cache, cache_index)` runs t new tokens against it.
    """

    def __init__(self, config, **kwargs):
        if isinstance(config, dict):
            config = ModelConfig.from_dict(config)
        if not isinstance(config, ModelConfig):
            raise ValueError("`config` must be a llm_tf.ModelConfig or its dict. "
                             f"Received: config={config!r}")
        super().__init__(**kwargs)
        self.config = config
        init = keras.initializers.RandomNormal(stddev=INIT_STDDEV)
        residual_init = keras.initializers.RandomNormal(
            stddev=INIT_STDDEV / math.sqrt(2 * config.num_layers))
        self.embedding = TokenAndPositionEmbedding(
            config.vocab_size, config.d_model, config.max_length,
            position_encoding=config.position_encoding,
            scale_embeddings=config.scale_embeddings, dropout=config.dropout,
            embeddings_initializer=init, name="embedding", dtype=self.dtype_policy)
        rotary = ROPE_MAX_WAVELENGTH if config.position_encoding == "rope" else None
        self.blocks = [
            DecoderLayer(
                config.d_model, config.num_heads, config.dff, use_cross_attention=False,
                dropout=config.dropout, norm_placement=config.norm_placement,
                activation=config.activation, use_bias=config.use_bias,
                layer_norm_epsilon=config.layer_norm_epsilon, rotary_max_wavelength=rotary,
                kernel_initializer=init, output_kernel_initializer=residual_init,
                name=f"block_{i}", dtype=self.dtype_policy)
            for i in range(config.num_layers)]
        # Post-LN blocks already end in a LayerNorm; pre-LN ones need a last one.
        self.final_norm = (keras.layers.LayerNormalization(
            epsilon=config.layer_norm_epsilon, center=config.use_bias, name="final_norm",
            dtype=self.dtype_policy) if config.norm_placement == "pre" else None)
        # Logits are float32 even under mixed precision: the softmax over V
        # classes and the loss need the range and precision.
        self.lm_head = None if config.tie_embeddings else keras.layers.Dense(
            config.vocab_size, use_bias=False, kernel_initializer=clone_initializer(init), name="lm_head",
            dtype="float32")

    @classmethod
    def from_preset(cls, name, **overrides):
        """The model of preset `name` ("tiny", "small", "seed"), fields overridden by keyword."""
        return cls(model_config_from_preset(name, **overrides))

    def build(self, token_ids_shape=(None, None)):
        if self.built:  # building twice would try to create the variables again
            return
        hidden_shape = tuple(token_ids_shape) + (self.config.d_model,)
        sublayers = [(self.embedding, token_ids_shape), (self.final_norm, hidden_shape),
                     (self.lm_head, hidden_shape)] + [(block, hidden_shape) for block in self.blocks]
        for layer, shape in sublayers:
            # A sublayer may already be built by a direct call (e.g. call_with_cache).
            if layer is not None and not layer.built:
                layer.build(shape)
        self.built = True

    def _logits(self, x):
        if self.final_norm is not None:
            x = self.final_norm(x)
        if self.lm_head is not None:
            return self.lm_head(x)  # (B, T, V), float32
        # Tied weights (Press & Wolf 2017): logits = x Eᵀ with the token table E (V, D).
        return tf.matmul(tf.cast(x, tf.float32), tf.cast(self.embedding.embeddings, tf.float32),
                         transpose_b=True)  # (B, T, V)

    def call(self, token_ids, padding_mask=None, positions=None, training=None):
        x = self.embedding(token_ids, positions=positions, training=training)  # (B, T, D)
        for block in self.blocks:
            x = block(x, padding_mask=padding_mask, positions=positions, training=training)
        return self._logits(x)

    # -- incremental decoding -------------------------------------------------

    def init_cache(self, batch_size, dtype=None):
        """Zeros (L, B, 2, H, T_max, Dh), T_max = max_length, in the compute dtype."""
        self.build()
        c = self.config
        return tf.zeros((c.num_layers, batch_size, 2, c.num_heads, c.max_length, c.head_dim),
                        dtype=dtype or self.compute_dtype)

    def call_with_cache(self, token_ids, cache, cache_index, padding_mask=None, positions=None):
        """Runs t new tokens, reading and extending the key/value cache.

        Args:
            token_ids: int (B, t), the tokens at cache slots [cache_index, cache_index + t).
            cache: (L, B, 2, H, T_max, Dh) from `init_cache` or a previous call;
                or a tuple of L per-layer caches (B, 2, H, T_max, Dh), returned as a
                tuple: in a decode loop under XLA each layer's cache is then updated
                in place, where stacking copies all of them every step (4x slower
                per step at T_max = 1040, benchmarks/generate.py).
            cache_index: int scalar, slot of token_ids[:, 0].
            padding_mask: optional bool (B, T_max) over cache slots, False for
                left padding (those keys are never attended to).
            positions: optional int (t,) or (B, t); default cache_index + range(t).

        Returns:
            (logits (B, t, V) float32, updated cache).
        """
        self.build()
        if positions is None:
            positions = cache_index + tf.range(tf.shape(token_ids)[1])  # (t,)
        x = self.embedding(token_ids, positions=positions)  # (B, t, D)
        new_cache = []
        for i, block in enumerate(self.blocks):
            x, layer_cache = block(x, padding_mask=padding_mask, positions=positions,
                                   cache=cache[i], cache_index=cache_index)
            new_cache.append(layer_cache)
        if isinstance(cache, (tuple, list)):
            return self._logits(x), tuple(new_cache)  # (B, t, V), L × (B, 2, H, T_max, Dh)
        return self._logits(x), tf.stack(new_cache)  # (B, t, V), (L, B, 2, H, T_max, Dh)

    # -- weights files ----------------------------------------------------------

    def save_weights(self, filepath, overwrite=True, **kwargs):
        """Keras' `save_weights`, plus this model's config stamped into the file, so that
        `load_weights` into a model of another configuration names the field that differs."""
        from llm_tf import saving

        saving.check_weights_path(filepath)
        self.build()
        super().save_weights(filepath, overwrite=overwrite, **kwargs)
        saving.stamp_config(filepath, self.config)

    def load_weights(self, filepath, skip_mismatch=False, **kwargs):
        """Keras' `load_weights`, after checking the file belongs to this configuration.

        Plain Keras would load a 4-layer file into a 2-layer model without a word
        (the extra layers are ignored); here a `ValueError` names the differing field.
        """
        from llm_tf import saving

        filepath = saving.check_weights_file(filepath)
        self.build()
        if not skip_mismatch:
            saving.check_weights_fit(self, filepath)
        super().load_weights(filepath, skip_mismatch=skip_mismatch, **kwargs)

    def compute_output_shape(self, token_ids_shape):
        return tuple(token_ids_shape) + (self.config.vocab_size,)

    def get_config(self):
        return {**super().get_config(), "config": self.config.to_dict()}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(ModelConfig.from_dict(config.pop("config")), **config)
