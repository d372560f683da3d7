"""Gradient accumulation and steps per call: the same updates as one big batch, one step at a
time; activation recomputation: the same gradients."""

import json
import os

import numpy as np
import pytest
from training_util import python_env, run_python

# Logical devices must be configured before TensorFlow initialises: a fresh process.
ACCUMULATE = r"""
import json
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from llm_tf.models import TransformerLM
from llm_tf.tokenizers import IGNORE_LABEL
from llm_tf.training.distribute import get_strategy
from llm_tf.training.optimizer import make_optimizer
from llm_tf.training.step import TrainStep
from training_util import random_batches, tiny_configs

model_config, _, train = tiny_configs(steps=6)
keras.utils.set_random_seed(0)
initial = TransformerLM(model_config)
initial.build((None, 32))
# 6 big batches of 8 rows; the second half of every big batch has few labelled tokens, so a
# mean per micro-batch (instead of over the tokens of all of them) would weigh them wrongly.
x, y = zip(*random_batches(64, count=6))
y = [tf.concat([t[:4], tf.concat([t[4:, :5], tf.fill([4, 27], IGNORE_LABEL)], 1)], 0)
     for t in y]
big = tf.data.Dataset.from_tensor_slices((tf.stack(x), tf.stack(y)))
micro = big.unbatch().batch(4)  # rows 0-3, then rows 4-7, of each big batch

def run(strategy, data, accumulate, steps_per_call=1, recompute=False):
    with strategy.scope():
        model = TransformerLM(model_config)
        model.build((None, 32))
        model.set_weights(initial.get_weights())
        optimizer = make_optimizer(train, model.trainable_variables, 32)
        step = TrainStep(model, optimizer, strategy, clip_norm=0.3, accumulate=accumulate,
                         recompute=recompute)
    batches = iter(strategy.experimental_distribute_dataset(data))
    losses = []
    while len(losses) < 6:
        losses += [float(v) for v in step.run(batches, steps_per_call)["losses"].numpy()]
    return {"replicas": strategy.num_replicas_in_sync, "losses": losses,
            "steps": int(step.step.numpy()),
            "weights": [w.ravel()[:50].tolist() for w in model.get_weights()]}

one, two = tf.distribute.get_strategy(), get_strategy("mirrored")
print(json.dumps({"big": run(one, big, 1), "accumulated": run(one, micro, 2),
                  "mirrored_accumulated": run(two, micro, 2),
                  "three_per_call": run(one, micro, 2, steps_per_call=3),
                  "recomputed": run(one, big, 1, recompute=True)}))
"""


@pytest.mark.slow
def test_accumulated_micro_batches_equal_one_big_batch_also_on_two_replicas():
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    env = python_env()
    env["PYTHONPATH"] = os.pathsep.join([tests_dir, env["PYTHONPATH"]])
    result = json.loads(run_python(ACCUMULATE, env=env).stdout.strip().splitlines()[-1])
    big = result["big"]
    assert big["steps"] == 6 and len(set(big["losses"])) == 6
    assert result["mirrored_accumulated"]["replicas"] == 2
    for name in ("accumulated", "mirrored_accumulated", "three_per_call", "recomputed"):
        other = result[name]
        assert other["steps"] == 6, name
        np.testing.assert_allclose(other["losses"], big["losses"], atol=1e-5, rtol=0,
                                   err_msg=name)
        for a, b in zip(big["weights"], other["weights"]):
            np.testing.assert_allclose(b, a, atol=1e-5, rtol=0, err_msg=name)
