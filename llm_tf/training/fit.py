"""The Keras way: `model.compile` + `model.fit`, with the custom loop's ingredients.

For those who prefer Keras' loop (callbacks, `History`, its progress bar),
`compile_lm` gives a `TransformerLM` the *same* optimizer (AdamW, PyTorch
epsilon, decay on matrices only), the same schedule, the same loss
(`LanguageModelLoss`: cross-entropy over non-pad tokens) and a perplexity
metric as `llm_tf.training.run.train` uses; `fit` runs `model.fit` so that one
Keras "epoch" is one evaluation interval.

    model = TransformerLM(config)
    history = fit(model, train_ds, val_ds, TrainConfig(steps=2000, eval_interval=250))

On one device this takes exactly the custom loop's steps (tests/test_training_fit.py
checks the losses agree). One difference under `tf.distribute` with several
replicas: Keras clips each replica's gradients *before* summing them, the custom
loop after; for a global-norm clip that is another algorithm (see step.py), so
`fit` warns there.
"""

from __future__ import annotations

import math
import warnings

import keras
import tensorflow as tf

from llm_tf.config import TrainConfig
from llm_tf.training.losses import LanguageModelLoss, Perplexity
from llm_tf.training.optimizer import make_optimizer


def compile_lm(model, train: TrainConfig) -> keras.Model:
    """`model.compile` with the custom loop's optimizer, schedule, loss and a perplexity metric.

    Call it inside the strategy's scope if there is one (the optimizer builds
    its variables here). Returns `model`.
    """
    if not model.built:
        model.build()
    optimizer = make_optimizer(train, model.trainable_variables, model.config.d_model,
                               mixed_float16=train.precision == "mixed_float16",
                               global_clipnorm=train.clip_norm or None)
    model.compile(optimizer=optimizer, loss=LanguageModelLoss(), metrics=[Perplexity()],
                  jit_compile=train.jit_compile)
    return model


def fit(model, train_ds: tf.data.Dataset, val_ds: tf.data.Dataset | None, train: TrainConfig,
        callbacks=None, verbose="auto") -> keras.callbacks.History:
    """Trains `model` for `train.steps` steps with `model.fit`, validating every `eval_interval`.

    Args:
        model: a `TransformerLM` (compiled here with `compile_lm`).
        train_ds: repeating dataset of (x, y) batches (`llm_tf.data.make_lm_datasets`).
        val_ds: validation batches, or None.
        train: the `TrainConfig`; `steps` is rounded up to whole evaluation intervals.
        callbacks, verbose: passed to `model.fit`.

    Returns:
        the `History`: `loss`, `perplexity`, `val_loss`, `val_perplexity` per interval.
    """
    if tf.distribute.get_strategy().num_replicas_in_sync > 1:
        warnings.warn("model.fit clips gradients per replica before summing them; the custom "
                      "loop (llm_tf.training.train) clips the global norm of the summed "
                      "gradient. Expect a small difference.", stacklevel=2)
    compile_lm(model, train)
    intervals = math.ceil(train.steps / train.eval_interval)
    return model.fit(train_ds, epochs=intervals, steps_per_epoch=train.eval_interval,
                     validation_data=val_ds, callbacks=callbacks, verbose=verbose,
                     shuffle=False)  # the datasets are shuffled (or ordered) already
