"""Learning-rate schedules: warm-up then cosine (nanoGPT), the paper's, and constant.

Each is a `keras.optimizers.schedules.LearningRateSchedule` called with the
optimizer's 0-based step counter, so the rate used by update `it` (0, 1, ...)
is exactly nanoGPT's `get_lr(it)`:

    warm-up   it < warmup:   lr · (it + 1) / (warmup + 1)
    cosine    otherwise:     min_lr + ½ (1 + cos(π (it − warmup) / (steps − warmup))) (lr − min_lr)
    after     it > steps:    min_lr

The paper's schedule (Vaswani et al. 2017, §5.3), counted from step 1:

    d_model^-0.5 · min(step^-0.5, step · warmup^-1.5)
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from llm_tf.config import TrainConfig


@keras.saving.register_keras_serializable(package="llm_tf")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to `learning_rate`, then cosine decay to `min_learning_rate` at `steps`."""

    def __init__(self, learning_rate, min_learning_rate, warmup_steps, steps):
        self.learning_rate = float(learning_rate)
        self.min_learning_rate = float(min_learning_rate)
        self.warmup_steps = int(warmup_steps)
        self.steps = int(steps)

    def __call__(self, step):
        it = tf.cast(step, tf.float32)
        lr, min_lr = self.learning_rate, self.min_learning_rate
        warmup = float(self.warmup_steps)
        warm = lr * (it + 1.0) / (warmup + 1.0)
        ratio = (it - warmup) / max(float(self.steps - self.warmup_steps), 1.0)
        ratio = tf.clip_by_value(ratio, 0.0, 1.0)
        cosine = min_lr + 0.5 * (1.0 + tf.cos(math.pi * ratio)) * (lr - min_lr)
        return tf.where(it < warmup, warm, cosine)

    def get_config(self):
        return {"learning_rate": self.learning_rate, "min_learning_rate": self.min_learning_rate,
                "warmup_steps": self.warmup_steps, "steps": self.steps}


@keras.saving.register_keras_serializable(package="llm_tf")
class WarmupConstant(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up (as `WarmupCosine`), then `learning_rate` for ever."""

    def __init__(self, learning_rate, warmup_steps):
        self.learning_rate = float(learning_rate)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        it = tf.cast(step, tf.float32)
        warmup = float(self.warmup_steps)
        return tf.where(it < warmup, self.learning_rate * (it + 1.0) / (warmup + 1.0),
                        tf.constant(self.learning_rate, tf.float32))

    def get_config(self):
        return {"learning_rate": self.learning_rate, "warmup_steps": self.warmup_steps}


@keras.saving.register_keras_serializable(package="llm_tf")
class Noam(keras.optimizers.schedules.LearningRateSchedule):
    """The paper's rate: d_model^-0.5 · min(step^-0.5, step · warmup^-1.5), step from 1.

    It peaks at step = warmup with d_model^-0.5 · warmup^-0.5 (7.0e-4 for the
    base model: d_model 512, warmup 4000) and then decays as step^-0.5.
    """

    def __init__(self, d_model, warmup_steps):
        if warmup_steps <= 0:
            raise ValueError(f"`warmup_steps` must be positive. Received: {warmup_steps}")
        self.d_model = int(d_model)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        s = tf.cast(step, tf.float32) + 1.0  # the optimizer counts from 0, the paper from 1
        return self.d_model ** -0.5 * tf.minimum(tf.math.rsqrt(s), s * self.warmup_steps ** -1.5)

    def get_config(self):
        return {"d_model": self.d_model, "warmup_steps": self.warmup_steps}


def make_schedule(train: TrainConfig,
                  d_model: int) -> keras.optimizers.schedules.LearningRateSchedule:
    """The schedule `train.schedule` names ("cosine", "noam" or "constant")."""
    if train.schedule == "cosine":
        return WarmupCosine(train.learning_rate, train.min_learning_rate, train.warmup_steps,
                            train.steps)
    if train.schedule == "noam":
        return Noam(d_model, train.warmup_steps)
    return WarmupConstant(train.learning_rate, train.warmup_steps)
