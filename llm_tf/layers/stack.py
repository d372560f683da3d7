"""What the encoder and decoder stacks share: embedding, arguments, final LayerNorm, config."""

import keras

from llm_tf._validation import check_positive
from llm_tf.layers.embedding import TokenAndPositionEmbedding


class TransformerStack(keras.layers.Layer):
    """Base of `TransformerEncoder` and `TransformerDecoder` (the paper's two stacks).

    Token ids are embedded, scaled by √D and given sinusoidal positions (§3.4–3.5
    of the paper, the design document's `maximum_position_encoding`); then come
    `num_layers` blocks, and a final LayerNorm when the blocks are pre-LN.

    Args:
        num_layers: number of blocks.
        d_model: D.
        num_heads: H.
        dff: F.
        vocab_size: V of the tokens this stack reads.
        maximum_position_encoding: rows of the sinusoidal table, the longest
            sequence accepted (the document uses 10000).
        dropout_rate: dropout everywhere.
        norm_placement: "post" (the paper, the document) or "pre" (adds a final
            LayerNorm).
        activation: feed-forward activation.
        pad_id: token id treated as padding when no mask is given.
        layer_norm_epsilon: LayerNorm epsilon.
    """

    def __init__(self, num_layers, d_model, num_heads, dff, vocab_size,
                 maximum_position_encoding=10000, dropout_rate=0.1, norm_placement="post",
                 activation="relu", pad_id=0, layer_norm_epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        check_positive("num_layers", num_layers)
        self.num_layers = num_layers
        self.d_model = d_model
        self.num_heads = num_heads
        self.dff = dff
        self.maximum_position_encoding = maximum_position_encoding
        self.dropout_rate = dropout_rate
        self.norm_placement = norm_placement
        self.activation = activation
        self.pad_id = pad_id
        self.layer_norm_epsilon = layer_norm_epsilon
        self.embedding = TokenAndPositionEmbedding(
            vocab_size, d_model, maximum_position_encoding, position_encoding="sinusoidal",
            scale_embeddings=True, dropout=dropout_rate, name="embedding",
            dtype=self.dtype_policy)
        self.final_norm = (keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, name="final_norm", dtype=self.dtype_policy)
            if norm_placement == "pre" else None)

    def block_arguments(self):
        """Keyword arguments every block of this stack is made with."""
        return dict(dropout=self.dropout_rate, norm_placement=self.norm_placement,
                    activation=self.activation, layer_norm_epsilon=self.layer_norm_epsilon,
                    dtype=self.dtype_policy)

    def build_stack(self, token_ids_shape, blocks, *block_shapes):
        hidden_shape = tuple(token_ids_shape) + (self.d_model,)
        self.embedding.build(token_ids_shape)
        for block in blocks:
            block.build(hidden_shape, *block_shapes)
        if self.final_norm is not None:
            self.final_norm.build(hidden_shape)
        self.built = True

    def normalize_output(self, x):
        return x if self.final_norm is None else self.final_norm(x)

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
        }
