"""The encoder–decoder Transformer (design document §2.1.1, §3.3, §4.3; the paper's model).

    memory = encoder(source_ids)                     # (B, S, D)   layers/encoder.py
    x = decoder(target_ids, memory)                  # (B, T, D)   layers/decoder.py
    logits = x Eᵀ  (tied)  or  x W + b               # (B, T, V)   here, float32

Two ways to make one:

* `Transformer(num_layers, d_model, num_heads, dff, input_vocab_size, target_vocab_size, ...)`,
  the TensorFlow tutorial's arguments (notebook 05 builds its toy translator so);
* `Transformer.from_model_config(config)` from a `ModelConfig`, as `llm-tf train --task
  translation` does: one vocabulary for both languages (a shared subword tokenizer), so with
  `tie_embeddings` the source embedding, the target embedding and the output projection are
  one (V, D) matrix, as in the paper (§3.4: "we share the same weight matrix between the two
  embedding layers and the pre-softmax linear transformation").
"""

import keras
import tensorflow as tf

from llm_tf.config import ModelConfig
from llm_tf.layers.decoder import TransformerDecoder
from llm_tf.layers.embedding import TokenAndPositionEmbedding
from llm_tf.layers.encoder import TransformerEncoder
from llm_tf.layers.masks import padding_mask as token_padding_mask
from llm_tf.tokenizers.base import PAD_ID
from llm_tf.weights import StampedWeights


@keras.saving.register_keras_serializable(package="llm_tf")
class Transformer(StampedWeights, keras.Model):
    """Encoder–decoder Transformer for sequence-to-sequence tasks (translation, summaries).

    The encoder reads the whole source; the decoder predicts the target one token
    at a time, attending causally to itself and fully to the encoder's outputs.

    Args:
        num_layers, d_model, num_heads, dff: as in `TransformerEncoder`, shared
            by both stacks.
        input_vocab_size: source vocabulary.
        target_vocab_size: target vocabulary (size of the logits).
        maximum_position_encoding: longest source or target accepted.
        dropout_rate: dropout everywhere.
        norm_placement: "post" (the paper) or "pre".
        activation: feed-forward activation.
        pad_id: padding id in both sources and targets.
        layer_norm_epsilon, position_encoding, scale_embeddings, use_bias: as in
            `TransformerStack`, for both stacks.
        tie_embeddings: one token table for the source, the target and the output
            projection (needs input_vocab_size == target_vocab_size).
        embeddings_initializer: the token tables' initializer.

    Call arguments:
        inputs: a pair (source_ids (B, S), target_ids (B, T)); target_ids are
            the decoder's inputs (BOS + target[:-1], "teacher forcing").
        training: enables dropout.

    Returns:
        logits (B, T, target_vocab_size), float32.

    Attributes:
        config: the `ModelConfig` this model is (None when the two vocabularies differ
            or `pad_id` is not llm_tf's PAD: such a model has no `ModelConfig`, and its
            weights files are checked by shapes only).
    """

    def __init__(self, num_layers, d_model, num_heads, dff, input_vocab_size,
                 target_vocab_size, maximum_position_encoding=10000, dropout_rate=0.1,
                 norm_placement="post", activation="relu", pad_id=0, layer_norm_epsilon=1e-5,
                 position_encoding="sinusoidal", scale_embeddings=True, use_bias=True,
                 tie_embeddings=False, embeddings_initializer="uniform", **kwargs):
        super().__init__(**kwargs)
        if tie_embeddings and input_vocab_size != target_vocab_size:
            raise ValueError("`tie_embeddings` shares one token table between source and target: "
                             "the two vocabularies must be one. Received: input_vocab_size="
                             f"{input_vocab_size}, target_vocab_size={target_vocab_size}")
        self.num_layers = num_layers
        self.d_model = d_model
        self.num_heads = num_heads
        self.dff = dff
        self.input_vocab_size = input_vocab_size
        self.target_vocab_size = target_vocab_size
        self.maximum_position_encoding = maximum_position_encoding
        self.dropout_rate = dropout_rate
        self.norm_placement = norm_placement
        self.activation = activation
        self.pad_id = pad_id
        self.layer_norm_epsilon = layer_norm_epsilon
        self.position_encoding = position_encoding
        self.scale_embeddings = scale_embeddings
        self.use_bias = use_bias
        self.tie_embeddings = tie_embeddings
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        shared = dict(num_layers=num_layers, d_model=d_model, num_heads=num_heads, dff=dff,
                      maximum_position_encoding=maximum_position_encoding,
                      dropout_rate=dropout_rate, norm_placement=norm_placement,
                      activation=activation, pad_id=pad_id,
                      layer_norm_epsilon=layer_norm_epsilon, position_encoding=position_encoding,
                      scale_embeddings=scale_embeddings, use_bias=use_bias,
                      embeddings_initializer=self.embeddings_initializer,
                      dtype=self.dtype_policy)
        # Tied: one embedding layer (token table + positions) read by both stacks.
        embedding = TokenAndPositionEmbedding(
            input_vocab_size, d_model, maximum_position_encoding,
            position_encoding=position_encoding, scale_embeddings=scale_embeddings,
            dropout=dropout_rate, embeddings_initializer=self.embeddings_initializer,
            name="shared_embedding", dtype=self.dtype_policy) if tie_embeddings else None
        self.encoder = TransformerEncoder(input_vocab_size=input_vocab_size, name="encoder",
                                          embedding=embedding, **shared)
        self.decoder = TransformerDecoder(target_vocab_size=target_vocab_size, name="decoder",
                                          embedding=embedding, **shared)
        # Logits are float32 even under mixed precision (softmax over V, the loss).
        self.final_dense = None if tie_embeddings else keras.layers.Dense(
            target_vocab_size, use_bias=use_bias, name="final_dense", dtype="float32")
        self.config = (ModelConfig(
            vocab_size=target_vocab_size, d_model=d_model, num_heads=num_heads,
            num_layers=num_layers, dff=dff, max_length=maximum_position_encoding,
            dropout=dropout_rate, norm_placement=norm_placement,
            position_encoding=position_encoding, tie_embeddings=tie_embeddings,
            use_bias=use_bias, activation=activation, layer_norm_epsilon=layer_norm_epsilon,
            scale_embeddings=scale_embeddings)
            if input_vocab_size == target_vocab_size and pad_id == PAD_ID else None)

    @classmethod
    def from_model_config(cls, config, **kwargs):
        """The translation model of a `ModelConfig` (what `llm-tf train --task translation`
        trains): one vocabulary of `config.vocab_size` for both sides, `max_length` the
        longest source and target, every other field shared by both stacks.

        Token tables start as N(0, D^-1/2) (fairseq's choice for the paper's model): times
        √D they have unit variance, like the sinusoids they are added to, and the tied
        output projection starts with logits of unit scale.
        """
        if isinstance(config, dict):
            config = ModelConfig.from_dict(config)
        if not isinstance(config, ModelConfig):
            raise ValueError("`config` must be a llm_tf.ModelConfig or its dict. "
                             f"Received: config={config!r}")
        return cls(config.num_layers, config.d_model, config.num_heads, config.dff,
                   config.vocab_size, config.vocab_size,
                   maximum_position_encoding=config.max_length, dropout_rate=config.dropout,
                   norm_placement=config.norm_placement, activation=config.activation,
                   pad_id=PAD_ID, layer_norm_epsilon=config.layer_norm_epsilon,
                   position_encoding=config.position_encoding,
                   scale_embeddings=config.scale_embeddings, use_bias=config.use_bias,
                   tie_embeddings=config.tie_embeddings,
                   embeddings_initializer=keras.initializers.RandomNormal(
                       stddev=config.d_model ** -0.5), **kwargs)

    def build(self, inputs_shape=((None, None), (None, None))):
        if self.built:  # building twice would try to create the variables again
            return
        source_shape, target_shape = inputs_shape
        # Sublayers may already be built by direct `encode`/`decode` calls.
        if not self.encoder.built:
            self.encoder.build(source_shape)
        if not self.decoder.built:
            self.decoder.build(target_shape, tuple(source_shape) + (self.d_model,))
        if self.final_dense is not None and not self.final_dense.built:
            self.final_dense.build(tuple(target_shape) + (self.d_model,))
        self.built = True

    def encode(self, source_ids, training=None):
        """source_ids (B, S) -> (encoder outputs (B, S, D), source padding mask (B, S))."""
        self.build()
        source_mask = token_padding_mask(source_ids, self.pad_id)
        return self.encoder(source_ids, padding_mask=source_mask, training=training), source_mask

    def logits(self, x):
        """(B, T, D) decoder outputs -> (B, T, V) float32 logits."""
        if self.final_dense is not None:
            return self.final_dense(x)
        # Tied: logits = x Eᵀ with the shared token table E (V, D).
        return tf.matmul(tf.cast(x, tf.float32),
                         tf.cast(self.decoder.embedding.embeddings, tf.float32),
                         transpose_b=True)

    def decode(self, target_ids, encoder_outputs, source_mask, training=None):
        """Decoder pass: target_ids int (B, T) -> logits (B, T, V) float32.

        Args:
            target_ids: int (B, T), the decoder's inputs.
            encoder_outputs: (B, S, D) from `encode`.
            source_mask: bool (B, S) from `encode`.
            training: enables dropout.
        """
        x = self.decoder(target_ids, encoder_outputs, encoder_padding_mask=source_mask,
                         training=training)  # (B, T, D)
        return self.logits(x)  # (B, T, V), float32

    def encoder_key_values(self, encoder_outputs):
        """Every decoder layer's cross-attention keys and values of `encoder_outputs`
        (B, S, D): a tuple of L tensors (B, 2, H, S, Dh), for `decode_with_cache`."""
        return self.decoder.encoder_key_values(encoder_outputs)

    def decode_with_cache(self, target_ids, cache, cache_index, encoder_outputs=None,
                          source_mask=None, encoder_key_values=None):
        """t new target tokens against the decoder's cache -> (logits (B, t, V), cache).

        Args:
            target_ids: int (B, t), the tokens at positions [cache_index, cache_index + t).
            cache: the L per-layer tensors (B, 2, H, T_max, Dh) from `init_cache`.
            cache_index: int scalar.
            encoder_outputs, source_mask: from `encode`.
            encoder_key_values: optional, from `encoder_key_values(encoder_outputs)`: then
                `encoder_outputs` is not needed, and the cross-attention reads keys and
                values projected once instead of projecting the encoder's outputs again
                at every step (what a decode loop should do).
        """
        x, cache = self.decoder.call_with_cache(target_ids, cache, cache_index, encoder_outputs,
                                                encoder_padding_mask=source_mask,
                                                encoder_key_values=encoder_key_values)
        return self.logits(x), cache

    def attention_weights(self, source_ids, target_ids):
        """Each decoder layer's {"self_attention": (B, H, T, T), "cross_attention":
        (B, H, T, S)}, a list of L dicts (for plots)."""
        encoder_outputs, source_mask = self.encode(source_ids)
        return self.decoder.attention_weights(target_ids, encoder_outputs,
                                              encoder_padding_mask=source_mask)

    def init_cache(self, batch_size, max_length, dtype=None):
        """Zeros for the decoder's self-attention: a tuple of L tensors
        (B, 2, H, max_length, Dh), max_length <= maximum_position_encoding."""
        self.build()
        return self.decoder.init_cache(batch_size, max_length, dtype)

    def call(self, inputs, training=None):
        source_ids, target_ids = inputs
        encoder_outputs, source_mask = self.encode(source_ids, training=training)
        return self.decode(target_ids, encoder_outputs, source_mask, training=training)

    def weights_config(self):
        return self.config

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape[1]) + (self.target_vocab_size,)

    def get_config(self):
        return {
            **super().get_config(),
            "num_layers": self.num_layers,
            "d_model": self.d_model,
            "num_heads": self.num_heads,
            "dff": self.dff,
            "input_vocab_size": self.input_vocab_size,
            "target_vocab_size": self.target_vocab_size,
            "maximum_position_encoding": self.maximum_position_encoding,
            "dropout_rate": self.dropout_rate,
            "norm_placement": self.norm_placement,
            "activation": self.activation,
            "pad_id": self.pad_id,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "position_encoding": self.position_encoding,
            "scale_embeddings": self.scale_embeddings,
            "use_bias": self.use_bias,
            "tie_embeddings": self.tie_embeddings,
            "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
        }
