"""Models: the decoder-only `TransformerLM`, the encoder–decoder `Transformer`, and
`TransformerClassifier` (a language model's stack with a classification head)."""

from llm_tf.models.classifier import TransformerClassifier
from llm_tf.models.lm import TransformerLM
from llm_tf.models.transformer import Transformer

__all__ = ["Transformer", "TransformerClassifier", "TransformerLM"]
