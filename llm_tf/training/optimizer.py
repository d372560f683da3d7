"""AdamW as nanoGPT (PyTorch) runs it, and the optimizer a `TrainConfig` asks for.

Two details decide whether a Keras run matches a PyTorch one:

* **Which weights decay.** Decoupled weight decay (Loshchilov & Hutter 2019)
  applies to every weight matrix — token and position embeddings included —
  and not to LayerNorm scales/offsets or biases. The rule nanoGPT uses is the
  rank: 2-D and larger decay, 1-D does not. Keras' `exclude_from_weight_decay`
  must be told before the optimizer is built.
* **Where epsilon sits.** Keras' Adam adds epsilon to √v̂·√(1 − β2^t), PyTorch
  to √v̂ after bias correction. `AdamW` here uses PyTorch's placement, so
  `epsilon=1e-8` means what it means in nanoGPT.

Gradient clipping is *not* done by the optimizer: under `tf.distribute` Keras
clips each replica's gradients before summing them, which changes the result.
The train step clips the all-reduced gradients itself (see `step.py`).
"""

from __future__ import annotations

import contextlib

import keras
from keras import ops

from llm_tf.config import TrainConfig
from llm_tf.training.schedules import make_schedule


@keras.saving.register_keras_serializable(package="llm_tf")
class AdamW(keras.optimizers.AdamW):
    """`keras.optimizers.AdamW` with PyTorch's epsilon placement.

    Update for step t (1-based), after the decoupled decay `θ ← θ − lr·wd·θ`:

        m ← β1 m + (1 − β1) g,   v ← β2 v + (1 − β2) g²
        θ ← θ − lr / (1 − β1^t) · m / (√v / √(1 − β2^t) + ε)
    """

    def __init__(self, *args, **kwargs):
        if kwargs.get("amsgrad"):
            raise ValueError("llm_tf's AdamW does not implement amsgrad. Received: amsgrad=True")
        super().__init__(*args, **kwargs)
        self._gradients_are_reduced = False

    @contextlib.contextmanager
    def reduced_gradients(self):
        """Within the block, `apply` takes its gradients as already summed over the replicas.

        Keras 3 sums the gradients over the replicas inside `apply`. `TrainStep` all-reduces
        them itself (it must, to clip the global norm), and calls `apply` in this block, so
        they cross the wire once. It matters while a step is traced, and only there: a later
        `model.fit` with the same optimizer traces its own step, outside the block, and
        gets Keras' sum.
        """
        previous, self._gradients_are_reduced = self._gradients_are_reduced, True
        try:
            yield
        finally:
            self._gradients_are_reduced = previous

    def _all_reduce_sum_gradients(self, grads_and_vars):
        # Overrides Keras' TensorFlow optimizer (keras/src/backend/tensorflow/optimizer.py);
        # tests/test_training_distribute.py checks 2 replicas = 1 device through this path.
        if self._gradients_are_reduced:
            return list(grads_and_vars)
        return super()._all_reduce_sum_gradients(grads_and_vars)

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        t = ops.cast(self.iterations + 1, variable.dtype)
        bias_correction1 = 1 - ops.power(ops.cast(self.beta_1, variable.dtype), t)
        bias_correction2 = 1 - ops.power(ops.cast(self.beta_2, variable.dtype), t)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
        denominator = ops.add(ops.divide(ops.sqrt(v), ops.sqrt(bias_correction2)), self.epsilon)
        self.assign_sub(variable, ops.divide(ops.multiply(m, lr / bias_correction1), denominator))


def decays(variable) -> bool:
    """nanoGPT's rule: weight matrices and embeddings decay; norms' scales and biases do not."""
    return len(variable.shape) >= 2


def make_optimizer(train: TrainConfig, trainable_variables, d_model: int,
                   mixed_float16: bool = False, global_clipnorm=None) -> keras.optimizers.Optimizer:
    """AdamW with `train`'s schedule, betas, epsilon and weight decay, built on the variables.

    Call it inside `strategy.scope()`: Keras 3 creates the slot variables in
    `build`, and they must be distributed like the model's (keras-team/keras#19246).
    With `mixed_float16` the optimizer is wrapped in a `LossScaleOptimizer`
    (dynamic loss scaling: float16 gradients would otherwise underflow).
    `global_clipnorm` is for `model.fit` only (the custom step clips itself).
    """
    optimizer = AdamW(learning_rate=make_schedule(train, d_model), weight_decay=train.weight_decay,
                      beta_1=train.beta1, beta_2=train.beta2, epsilon=train.epsilon,
                      global_clipnorm=global_clipnorm)
    optimizer.exclude_from_weight_decay(
        var_list=[v for v in trainable_variables if not decays(v)])
    if mixed_float16:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(trainable_variables)
    return optimizer
