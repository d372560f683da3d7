"""`fit()`: Keras' loop with the custom loop's optimizer, schedule and loss — the same steps."""

import keras
import numpy as np
import tensorflow as tf
from training_util import random_batches, tiny_configs

from llm_tf.models import TransformerLM
from llm_tf.training.fit import fit
from llm_tf.training.optimizer import make_optimizer
from llm_tf.training.step import TrainStep


def test_fit_takes_the_same_steps_as_the_custom_loop():
    model_config, _, train = tiny_configs(steps=6, clip_norm=0.3)  # eval_interval 2
    keras.utils.set_random_seed(0)
    ours = TransformerLM(model_config)
    ours.build((None, 32))
    theirs = TransformerLM(model_config)
    theirs.build((None, 32))
    theirs.set_weights(ours.get_weights())
    data = random_batches(64, count=6)

    step = TrainStep(ours, make_optimizer(train, ours.trainable_variables, 32),
                     tf.distribute.get_strategy(), clip_norm=train.clip_norm)
    batches = iter(data)
    losses = [float(step(batches)["loss"]) for _ in range(6)]
    history = fit(theirs, data.repeat(), data.take(2), train, verbose=0).history

    np.testing.assert_allclose(history["loss"], np.mean(np.reshape(losses, (3, 2)), axis=1),
                               rtol=1e-5)
    assert set(history) >= {"loss", "perplexity", "val_loss", "val_perplexity"}
    np.testing.assert_allclose(history["val_perplexity"], np.exp(history["val_loss"]), rtol=1e-4)
    assert int(theirs.optimizer.iterations.numpy()) == 6
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
