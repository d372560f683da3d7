"""The decoder-only causal language model that the design document's §5 needs.

§5.1 pre-trains a `TransformerEncoder` as a language model. An encoder lets every
position see every other, so predicting token t+1 from position t would be
trivial: the model could read the answer. A language model needs *causal*
self-attention and no cross-attention — a Transformer decoder without its
encoder, GPT. The whole forward pass, with the file that holds each step:

    x = token_embedding[ids] (× √D)  + positions    # (B, T, D)   layers/embedding.py
    for each of the L blocks:                        #             layers/decoder.py
        x = x + Dropout(CausalSelfAttention(LN(x)))  # (B, T, D)   layers/attention.py
        x = x + Dropout(FFN(LN(x)))                  # (B, T, D)   layers/feed_forward.py
    x = LN(x)                                        # (B, T, D)   layers/stack.py
    logits = x Eᵀ  (tied)  or  x W_head              # (B, T, V)   here, float32

(pre-LN, the default; post-LN blocks compute LN(x + Sublayer(x)) and need no last LN.)
"""

import math

import keras
import tensorflow as tf

from llm_tf.config import ModelConfig, model_config_from_preset
from llm_tf.layers.decoder import TransformerDecoder
from llm_tf.weights import StampedWeights

# GPT-2 / nanoGPT initialisation: N(0, 0.02) everywhere, and the projections that
# write into the residual stream scaled by 1/sqrt(2L) so that the stream's
# variance does not grow with depth (GPT-2 paper, §2.3).
INIT_STDDEV = 0.02


def decoder_stack(config: ModelConfig, dtype=None) -> TransformerDecoder:
    """The decoder-only stack of `config` (embedding, L causal blocks, final norm), GPT-2
    initialised: the body of `TransformerLM`, and the backbone every model fine-tuned from
    one shares (`llm_tf.models.classifier`), so pre-trained weights fit it variable for
    variable."""
    init = keras.initializers.RandomNormal(stddev=INIT_STDDEV)
    residual_init = keras.initializers.RandomNormal(
        stddev=INIT_STDDEV / math.sqrt(2 * config.num_layers))
    return TransformerDecoder(
        config.num_layers, config.d_model, config.num_heads, config.dff, config.vocab_size,
        use_cross_attention=False, maximum_position_encoding=config.max_length,
        dropout_rate=config.dropout, norm_placement=config.norm_placement,
        activation=config.activation, pad_id=None,
        layer_norm_epsilon=config.layer_norm_epsilon,
        position_encoding=config.position_encoding,
        scale_embeddings=config.scale_embeddings, use_bias=config.use_bias,
        embeddings_initializer=init, kernel_initializer=init,
        output_kernel_initializer=residual_init, name="decoder", dtype=dtype)


@keras.saving.register_keras_serializable(package="llm_tf")
class TransformerLM(StampedWeights, keras.Model):
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
    `call_with_cache(token_ids, cache, cache_index)` runs t new tokens against it,
    returning (logits, cache). `attention_weights(token_ids)` gives every block's
    attention weights, for plots.
    """

    # Files written before the layers moved under `decoder/` (see llm_tf/weights.py).
    legacy_weight_groups = {"embedding": "decoder/embedding", "blocks": "decoder/blocks",
                            "final_norm": "decoder/final_norm"}

    def __init__(self, config, **kwargs):
        if isinstance(config, dict):
            config = ModelConfig.from_dict(config)
        if not isinstance(config, ModelConfig):
            raise ValueError("`config` must be a llm_tf.ModelConfig or its dict. "
                             f"Received: config={config!r}")
        super().__init__(**kwargs)
        self.config = config
        self.decoder = decoder_stack(config, self.dtype_policy)
        # Logits are float32 even under mixed precision: the softmax over V
        # classes and the loss need the range and precision.
        self.lm_head = None if config.tie_embeddings else keras.layers.Dense(
            config.vocab_size, use_bias=False,
            kernel_initializer=keras.initializers.RandomNormal(stddev=INIT_STDDEV),
            name="lm_head", dtype="float32")

    @classmethod
    def from_preset(cls, name, **overrides):
        """The model of preset `name` ("tiny", "small", "seed"), fields overridden by keyword."""
        return cls(model_config_from_preset(name, **overrides))

    def build(self, token_ids_shape=(None, None)):
        if self.built:  # building twice would try to create the variables again
            return
        self.decoder.build(token_ids_shape)
        if self.lm_head is not None:
            self.lm_head.build(tuple(token_ids_shape) + (self.config.d_model,))
        self.built = True

    def call(self, token_ids, padding_mask=None, positions=None, training=None):
        x = self.decoder(token_ids, padding_mask=padding_mask, positions=positions,
                         training=training)  # (B, T, D)
        return self.logits(x)

    def logits(self, x):
        """(B, T, D) final hidden states -> (B, T, V) float32 logits."""
        if self.lm_head is not None:
            return self.lm_head(x)
        # Tied weights (Press & Wolf 2017): logits = x Eᵀ with the token table E (V, D).
        return tf.matmul(tf.cast(x, tf.float32),
                         tf.cast(self.decoder.embedding.embeddings, tf.float32),
                         transpose_b=True)

    # -- incremental decoding -------------------------------------------------

    def init_cache(self, batch_size, dtype=None):
        """Zeros: a tuple of L tensors (B, 2, H, T_max, Dh), T_max = max_length."""
        self.build()
        return self.decoder.init_cache(batch_size, self.config.max_length, dtype)

    def call_with_cache(self, token_ids, cache, cache_index, padding_mask=None, positions=None):
        """Runs t new tokens, reading and extending the key/value cache.

        Args:
            token_ids: int (B, t), the tokens at cache slots [cache_index, cache_index + t).
            cache: the L per-layer tensors (B, 2, H, T_max, Dh) from `init_cache` or a
                previous call.
            cache_index: int scalar, slot of token_ids[:, 0].
            padding_mask: optional bool (B, T_max) over cache slots, False for
                left padding (those keys are never attended to).
            positions: optional int (t,) or (B, t); default cache_index + range(t).

        Returns:
            (logits (B, t, V) float32, updated cache).
        """
        self.build()
        x, cache = self.decoder.call_with_cache(token_ids, cache, cache_index,
                                                padding_mask=padding_mask, positions=positions)
        return self.logits(x), cache

    def attention_weights(self, token_ids, padding_mask=None, positions=None):
        """Each block's {"self_attention": (B, H, T, T)}, a list of L dicts."""
        self.build()
        return self.decoder.attention_weights(token_ids, padding_mask=padding_mask,
                                              positions=positions)

    def weights_config(self):
        return self.config

    def compute_output_shape(self, token_ids_shape):
        return tuple(token_ids_shape) + (self.config.vocab_size,)

    def get_config(self):
        return {**super().get_config(), "config": self.config.to_dict()}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(ModelConfig.from_dict(config.pop("config")), **config)
