"""Keras layers of the Transformer, from attention up to encoder and decoder stacks.

Notation (shape comments and docstrings use it throughout):

    B  batch size                 H   attention heads
    T  target (or only) length    Dh  head width, D / H
    S  source length              F   feed-forward width (dff)
    D  model width (d_model)      V   vocabulary size
    L  number of layers           T_max  key/value cache length

Masks are boolean, True = "may attend" / "is a real token".

Reading order, following the design document:
    masks -> attention (§4.1) -> position -> feed_forward -> block (residual rule)
    -> embedding -> stack -> encoder (§3.2, §4.2) -> decoder (§3.3, §4.3)
"""

from llm_tf.layers.attention import (
                                     MultiHeadAttention,
                                     attention_weights,
                                     scaled_dot_product_attention,
)
from llm_tf.layers.block import TransformerBlock
from llm_tf.layers.decoder import DecoderLayer, TransformerDecoder
from llm_tf.layers.embedding import TokenAndPositionEmbedding
from llm_tf.layers.encoder import EncoderLayer, TransformerEncoder
from llm_tf.layers.feed_forward import FeedForward
from llm_tf.layers.masks import (
                                     causal_mask,
                                     combine_masks,
                                     decoder_self_attention_mask,
                                     key_padding_mask,
                                     padding_mask,
)
from llm_tf.layers.position import (
                                     PositionalEncoding,
                                     PositionEmbedding,
                                     apply_rotary,
                                     sinusoidal_table,
)
from llm_tf.layers.stack import TransformerStack

__all__ = [
    "DecoderLayer", "EncoderLayer", "FeedForward", "MultiHeadAttention", "PositionEmbedding",
    "PositionalEncoding", "TokenAndPositionEmbedding", "TransformerBlock", "TransformerDecoder",
    "TransformerEncoder", "TransformerStack", "apply_rotary", "attention_weights", "causal_mask",
    "combine_masks",
    "decoder_self_attention_mask", "key_padding_mask", "padding_mask",
    "scaled_dot_product_attention", "sinusoidal_table",
]
