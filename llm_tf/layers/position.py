"""Position information: sinusoidal (the paper), learned (GPT-2) and rotary (RoPE).

Self-attention is permutation-invariant, so the model must be told where each
token is. The two additive kinds map integer positions to vectors that are added
to the token embeddings; rotary encoding instead rotates queries and keys inside
attention (see `MultiHeadAttention(rotary_max_wavelength=...)`).

Both additive layers take **positions**, not embeddings: `(B, T)` or `(T,)` int
tensors. That lets a left-padded batch give each row its own positions, which is
how llm_tf generates from prompts of different lengths.
"""

import keras
import numpy as np
import tensorflow as tf

from llm_tf._validation import check_positive


def sinusoidal_table(length, d_model, max_wavelength=10000.0):
    """The paper's table (§3.5): PE[p, 2i] = sin(p / w^(2i/D)), PE[p, 2i+1] = cos(...).

    Returns:
        float32 NumPy array (length, d_model), sines and cosines interleaved as
        in the paper.
    """
    positions = np.arange(length, dtype=np.float64)[:, None]  # (L, 1)
    pair = np.arange(0, d_model, 2, dtype=np.float64)[None, :]  # (1, ceil(D/2)), holds 2i
    angles = positions / np.power(max_wavelength, pair / d_model)  # (L, ceil(D/2))
    table = np.zeros((length, d_model), dtype=np.float64)
    table[:, 0::2] = np.sin(angles)
    table[:, 1::2] = np.cos(angles[:, : d_model // 2])
    return table.astype(np.float32)


@keras.saving.register_keras_serializable(package="llm_tf")
class PositionalEncoding(keras.layers.Layer):
    """Fixed sinusoidal position vectors (Vaswani et al. 2017, §3.5).

    The design document constructs its encoder with `maximum_position_encoding=
    10000`: that is this layer's `max_length`. The table holds no weights; it is
    recomputed from the config, so it costs nothing in a checkpoint.

    Args:
        d_model: D, width of each position vector.
        max_length: number of positions in the table.
        max_wavelength: the paper's 10000.

    Call arguments:
        positions: int tensor (B, T) or (T,), values in [0, max_length).

    Returns:
        (B, T, D) or (T, D) in the layer's compute dtype.
    """

    def __init__(self, d_model, max_length=10000, max_wavelength=10000.0, **kwargs):
        super().__init__(**kwargs)
        check_positive("d_model", d_model)
        check_positive("max_length", max_length)
        self.d_model = d_model
        self.max_length = max_length
        self.max_wavelength = max_wavelength
        self.table = tf.constant(sinusoidal_table(max_length, d_model, max_wavelength))

    def call(self, positions):
        return tf.cast(tf.gather(self.table, positions), self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "d_model": self.d_model, "max_length": self.max_length,
                "max_wavelength": self.max_wavelength}


@keras.saving.register_keras_serializable(package="llm_tf")
class PositionEmbedding(keras.layers.Layer):
    """Learned position vectors, one trainable row per position (GPT-2, nanoGPT's `wpe`).

    Args:
        max_length: number of positions (the context).
        d_model: D.
        embeddings_initializer: initializer of the (max_length, D) table.

    Call arguments:
        positions: int tensor (B, T) or (T,), values in [0, max_length).

    Returns:
        (B, T, D) or (T, D).
    """

    def __init__(self, max_length, d_model, embeddings_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        check_positive("max_length", max_length)
        check_positive("d_model", d_model)
        self.max_length = max_length
        self.d_model = d_model
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)

    def build(self, input_shape=None):
        # Named "embeddings" like keras.layers.Embedding's table, so weight-decay
        # rules written for token embeddings apply to it too.
        self.embeddings = self.add_weight(
            name="embeddings", shape=(self.max_length, self.d_model),
            initializer=self.embeddings_initializer)
        super().build(input_shape)

    def call(self, positions):
        return tf.cast(tf.gather(self.embeddings, positions), self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "max_length": self.max_length, "d_model": self.d_model,
                "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer)}


def apply_rotary(x, positions, max_wavelength=10000.0):
    """Rotary position encoding (Su et al. 2021, RoFormer), "rotate half" form.

    Each pair (x[i], x[i + Dh/2]) of a query or key vector is rotated by the angle
    position * max_wavelength^(-2i/Dh), so the dot product of a query at p and a
    key at q depends only on p - q.

    Args:
        x: (B, H, T, Dh) queries or keys; Dh even.
        positions: int (T,) or (B, T).
        max_wavelength: base of the frequencies (10000 in RoFormer and Llama).

    Returns:
        Tensor shaped and typed like `x`.
    """
    half = x.shape[-1] // 2
    exponents = tf.range(half, dtype=tf.float32) / float(half)
    inverse_frequency = tf.pow(tf.constant(max_wavelength, tf.float32), -exponents)  # (Dh/2,)
    angles = tf.cast(positions, tf.float32)[..., None] * inverse_frequency  # (…, T, Dh/2)
    if angles.shape.rank == 3:  # per-row positions (B, T, Dh/2) -> (B, 1, T, Dh/2)
        angles = angles[:, None, :, :]
    cos = tf.cast(tf.cos(angles), x.dtype)
    sin = tf.cast(tf.sin(angles), x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return tf.concat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)

