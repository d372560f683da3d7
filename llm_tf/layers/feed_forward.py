"""The position-wise feed-forward network (Vaswani et al. 2017, §3.3; document §3.2.2)."""

import keras

from llm_tf._validation import check_choice, check_positive, check_rate
from llm_tf.config import ACTIVATIONS
from llm_tf.layers.initializers import clone_initializer


@keras.saving.register_keras_serializable(package="llm_tf")
def gelu_tanh(x):
    """GELU's tanh approximation (Hendrycks & Gimpel 2016, §2), the one GPT-2 was trained with
    (Hugging Face calls it `gelu_new`): 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))."""
    return keras.activations.gelu(x, approximate=True)


# A config's activation name (config.ACTIVATIONS) -> what keras.layers.Dense takes.
ACTIVATION_FUNCTIONS = {"gelu": "gelu", "gelu_tanh": gelu_tanh, "relu": "relu"}
assert tuple(sorted(ACTIVATION_FUNCTIONS)) == tuple(sorted(ACTIVATIONS))


@keras.saving.register_keras_serializable(package="llm_tf")
class FeedForward(keras.layers.Layer):
    """FFN(x) = Dropout(act(x W1 + b1) W2 + b2), applied to every position alike.

    Args:
        d_model: D, input and output width.
        dff: F, hidden width (4·D in GPT-2, 2048 for D = 512 in the paper).
        activation: "relu" (the paper), "gelu" (exact, with erf, as PyTorch's `nn.GELU()`
            in nanoGPT; Keras' "gelu" default) or "gelu_tanh" (the tanh approximation
            GPT-2 used; what its published weights expect).
        dropout: rate applied to the output while training.
        use_bias: biases in both projections.
        kernel_initializer: initializer of the first projection.
        output_kernel_initializer: initializer of the second; defaults to the first.

    Call arguments:
        inputs: (B, T, D).
        training: enables dropout.

    Returns:
        (B, T, D).
    """

    def __init__(self, d_model, dff, activation="relu", dropout=0.0, use_bias=True,
                 kernel_initializer="glorot_uniform", output_kernel_initializer=None,
                 **kwargs):
        super().__init__(**kwargs)
        check_positive("d_model", d_model)
        check_positive("dff", dff)
        check_choice("activation", activation, ACTIVATIONS)
        check_rate("dropout", dropout)
        self.d_model = d_model
        self.dff = dff
        self.activation = activation
        self.dropout = dropout
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.output_kernel_initializer = keras.initializers.get(
            output_kernel_initializer or kernel_initializer)
        self.hidden_dense = keras.layers.Dense(
            dff, activation=ACTIVATION_FUNCTIONS[activation], use_bias=use_bias,
            kernel_initializer=clone_initializer(self.kernel_initializer), name="hidden",
            dtype=self.dtype_policy)
        self.output_dense = keras.layers.Dense(
            d_model, use_bias=use_bias,
            kernel_initializer=clone_initializer(self.output_kernel_initializer),
            name="output", dtype=self.dtype_policy)
        self.output_dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy)

    def build(self, input_shape):
        self.hidden_dense.build(input_shape)
        self.output_dense.build(tuple(input_shape[:-1]) + (self.dff,))
        self.built = True

    def call(self, inputs, training=None):
        hidden = self.hidden_dense(inputs)  # (B, T, F)
        return self.output_dropout(self.output_dense(hidden), training=training)  # (B, T, D)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "d_model": self.d_model,
            "dff": self.dff,
            "activation": self.activation,
            "dropout": self.dropout,
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "output_kernel_initializer": keras.initializers.serialize(
                self.output_kernel_initializer),
        }
