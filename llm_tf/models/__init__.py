"""Models: the decoder-only `TransformerLM` and the encoder–decoder `Transformer`."""

from llm_tf.models.lm import TransformerLM
from llm_tf.models.transformer import Transformer

__all__ = ["Transformer", "TransformerLM"]
