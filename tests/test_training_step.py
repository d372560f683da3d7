"""The train step (GradientTape, clip, AdamW), the evaluation step, the loop's NaN stop."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from training_util import random_batches, tiny_configs

from llm_tf.models import TransformerLM
from llm_tf.training.checkpoints import Checkpoints
from llm_tf.training.loop import TrainingDiverged, run_loop
from llm_tf.training.losses import IGNORE_LABEL
from llm_tf.training.optimizer import make_optimizer
from llm_tf.training.step import EvalStep, TrainStep

STRATEGY = tf.distribute.get_strategy()


def make_step(train, seed=0, dtype=None, jit_compile=False, model_config=None):
    model_config = model_config or tiny_configs()[0]
    keras.utils.set_random_seed(seed)
    model = TransformerLM(model_config, dtype=dtype)
    model.build((None, 32))
    optimizer = make_optimizer(train, model.trainable_variables, model_config.d_model,
                               mixed_float16=dtype == "mixed_float16")
    return TrainStep(model, optimizer, STRATEGY, clip_norm=train.clip_norm,
                     jit_compile=jit_compile)


def test_train_step_is_tape_then_global_clip_then_adamw():
    _, _, train = tiny_configs(clip_norm=0.05)  # small enough to clip
    step = make_step(train)
    reference = TransformerLM(step.model.config)
    reference.build((None, 32))
    reference.set_weights(step.model.get_weights())
    optimizer = make_optimizer(train, reference.trainable_variables, 32)
    x, y = next(iter(random_batches(64)))

    metrics = step(iter([(x, y)]))

    with tf.GradientTape() as tape:
        logits = reference(x, training=True)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
    grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, reference.trainable_variables)]
    clipped, norm = tf.clip_by_global_norm(grads, 0.05)
    optimizer.apply(clipped, reference.trainable_variables)
    assert float(norm) > 0.05  # the clip was active
    assert float(metrics["loss"]) == pytest.approx(float(loss), rel=1e-6)
    assert float(metrics["grad_norm"]) == pytest.approx(float(norm), rel=1e-5)
    assert float(metrics["learning_rate"]) == pytest.approx(1e-3 / 3)  # warm-up: lr·1/(2+1)
    for ours, theirs in zip(step.model.trainable_variables, reference.trainable_variables):
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-7)
    assert int(step.step.numpy()) == 1


def test_training_lowers_the_loss():
    _, _, train = tiny_configs(steps=40, learning_rate=3e-3)
    step = make_step(train)
    batch = next(iter(random_batches(64)))
    batches = iter(tf.data.Dataset.from_tensors(batch).repeat())
    losses = [float(step(batches)["loss"]) for _ in range(40)]
    assert losses[0] == pytest.approx(math.log(64), abs=0.3)  # uniform at initialisation
    assert losses[-1] < 0.75 * losses[0]


def test_jit_compiled_step_matches_the_graph_step():
    _, _, train = tiny_configs()
    data = random_batches(64, count=3)
    graph, xla = make_step(train, seed=3), make_step(train, seed=3, jit_compile=True)
    graph_losses = [float(graph(it)["loss"]) for it in [iter(data)] for _ in range(3)]
    xla_losses = [float(xla(it)["loss"]) for it in [iter(data)] for _ in range(3)]
    np.testing.assert_allclose(xla_losses, graph_losses, rtol=1e-4)
    x, y = next(iter(data))  # the whole replica step (forward, backward, AdamW) is one XLA module
    assert "HloModule" in xla._replica_step.experimental_get_compiler_ir(x, y)(stage="hlo")


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_trains_on_cpu_with_float32_logits(precision, jit_compile):
    # XLA too: the `tiny` preset compiles its step, loss scaling included under mixed_float16.
    _, _, train = tiny_configs(steps=25, learning_rate=3e-3)
    step = make_step(train, dtype=precision, jit_compile=jit_compile)
    assert step.model.compute_dtype == precision.split("_")[1]
    assert all(v.dtype == "float32" for v in step.model.trainable_variables)
    batch = next(iter(random_batches(64)))
    assert step.model(batch[0]).dtype == tf.float32
    batches = iter(tf.data.Dataset.from_tensors(batch).repeat())
    losses = [float(step(batches)["loss"]) for _ in range(25)]
    assert all(math.isfinite(loss) for loss in losses)
    assert losses[-1] < 0.8 * losses[0]


def test_eval_step_is_the_mean_over_every_labelled_token():
    step = make_step(tiny_configs()[2])
    batches = list(random_batches(64, count=3))
    x, y = batches[-1]
    ignored = tf.fill(tf.shape(y[:, 20:]), IGNORE_LABEL)
    batches[-1] = (x, tf.concat([y[:, :20], ignored], axis=1))  # padded tail
    loss, perplexity = EvalStep(step.model, STRATEGY)(
        tf.data.Dataset.from_tensor_slices(tuple(tf.stack(t) for t in zip(*batches))))
    total = count = 0.0
    for x, y in batches:
        per_token = tf.nn.sparse_softmax_cross_entropy_with_logits(
            tf.maximum(y, 0), step.model(x)).numpy()
        mask = y.numpy() >= 0
        total, count = total + per_token[mask].sum(), count + mask.sum()
    assert loss == pytest.approx(total / count, rel=1e-5)
    assert perplexity == pytest.approx(math.exp(total / count), rel=1e-5)


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    _, _, train = tiny_configs(steps=8)
    step = make_step(train)
    checkpoints = Checkpoints(tmp_path / "checkpoints", step.model, step.optimizer, step.step)
    batches = iter(random_batches(64))
    run_loop(step, batches, train.replace(steps=4), tokens_per_step=256,
             checkpoints=checkpoints)
    assert checkpoints.latest_path(checkpoints.directory).endswith("ckpt-4")
    good = [v.numpy() for v in step.model.trainable_variables]

    step.model.trainable_variables[3].assign(tf.fill(step.model.trainable_variables[3].shape,
                                                     float("nan")))
    with pytest.raises(TrainingDiverged, match=r"loss is nan at step 5.*ckpt-4"):
        run_loop(step, batches, train, tokens_per_step=256, checkpoints=checkpoints)
    assert checkpoints.latest_path(checkpoints.directory).endswith("ckpt-4")
    checkpoints.restore()
    assert int(step.step.numpy()) == 4
    for variable, value in zip(step.model.trainable_variables, good):
        np.testing.assert_array_equal(variable.numpy(), value)
