"""AdamW as PyTorch computes it, the weight-decay rule, and the masked LM loss."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from training_util import tiny_configs

from llm_tf.config import TrainConfig
from llm_tf.models import TransformerLM
from llm_tf.training.losses import (
    IGNORE_LABEL,
    LanguageModelLoss,
    Perplexity,
    token_loss_sum,
)
from llm_tf.training.optimizer import AdamW, decays, make_optimizer


def torch_adamw_reference(params, grads_per_step, lrs, beta1, beta2, eps, wd, decayed):
    """torch.optim.AdamW's update rule, in NumPy (weight decay only on `decayed`)."""
    params = [p.astype(np.float64).copy() for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for t, (grads, lr) in enumerate(zip(grads_per_step, lrs), start=1):
        for i, g in enumerate(grads):
            if decayed[i]:
                params[i] *= 1 - lr * wd
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            denominator = np.sqrt(v[i]) / np.sqrt(1 - beta2 ** t) + eps
            params[i] -= lr / (1 - beta1 ** t) * m[i] / denominator
    return params


def test_adamw_matches_pytorch_update_rule_with_decay_on_matrices_only():
    rng = np.random.default_rng(0)
    matrix = keras.Variable(rng.normal(size=(3, 4)).astype("float32"))
    vector = keras.Variable(rng.normal(size=(4,)).astype("float32"))
    variables = [matrix, vector]
    lr = 0.01
    # Tiny gradients make epsilon's placement visible (Keras' own Adam would differ).
    grads = [[rng.normal(size=(3, 4)) * 1e-7, rng.normal(size=(4,)) * 1e-7] for _ in range(5)]
    optimizer = AdamW(learning_rate=lr, weight_decay=0.1, beta_1=0.9, beta_2=0.99, epsilon=1e-8)
    optimizer.exclude_from_weight_decay(var_list=[v for v in variables if not decays(v)])
    optimizer.build(variables)
    expected = torch_adamw_reference([v.numpy() for v in variables], grads, [lr] * 5, 0.9, 0.99,
                                     1e-8, 0.1, [True, False])
    for step_grads in grads:
        optimizer.apply([tf.constant(g, tf.float32) for g in step_grads], variables)
    for variable, reference in zip(variables, expected):
        np.testing.assert_allclose(variable.numpy(), reference, rtol=1e-5, atol=1e-7)


def test_make_optimizer_decays_weight_matrices_and_embeddings_but_not_norms():
    model_config, _, train = tiny_configs()
    model = TransformerLM(model_config)
    model.build((None, 8))
    optimizer = make_optimizer(train.replace(learning_rate=0.1, warmup_steps=0,
                                             schedule="constant"),
                               model.trainable_variables, model_config.d_model)
    before = {v.path: v.numpy() for v in model.trainable_variables}
    zeros = [tf.zeros_like(v) for v in model.trainable_variables]
    optimizer.apply(zeros, model.trainable_variables)  # a pure weight-decay step
    shrunk = {v.path for v in model.trainable_variables
              if not np.allclose(v.numpy(), before[v.path])}
    matrices = {v.path for v in model.trainable_variables if len(v.shape) == 2}
    assert shrunk == matrices
    assert any("token_embedding" in p for p in shrunk)
    assert not any("gamma" in p for p in shrunk)
    embedding = next(v for v in model.trainable_variables if "token_embedding" in v.path)
    np.testing.assert_allclose(embedding.numpy(), before[embedding.path] * (1 - 0.1 * 0.1),
                               rtol=1e-6)


def test_mixed_float16_wraps_the_optimizer_in_loss_scaling():
    model_config, _, train = tiny_configs()
    model = TransformerLM(model_config)
    model.build((None, 8))
    optimizer = make_optimizer(train, model.trainable_variables, 32, mixed_float16=True)
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    assert isinstance(optimizer.inner_optimizer, AdamW)


def test_token_loss_ignores_negative_labels_and_learns_label_zero():
    logits = tf.random.stateless_normal((2, 5, 7), seed=(1, 2))
    labels = np.array([[4, 5, 0, IGNORE_LABEL, IGNORE_LABEL], [1, 2, 3, 4, 5]])
    total, count = token_loss_sum(labels, logits)
    per_token = tf.nn.sparse_softmax_cross_entropy_with_logits(np.maximum(labels, 0),
                                                               logits).numpy()
    mask = labels >= 0  # id 0 (PAD for llm_tf's tokenizers, class 0, GPT-2's "!") is a label
    assert float(count) == mask.sum() == 8
    assert float(total) == pytest.approx(per_token[mask].sum(), rel=1e-6)
    assert float(LanguageModelLoss()(labels, logits)) == pytest.approx(
        per_token[mask].mean(), rel=1e-6)


def test_label_smoothing_is_the_papers_mixture_with_the_uniform_distribution():
    logits = tf.random.stateless_normal((3, 4, 6), seed=(5, 6))
    labels = np.array([[1, 2, 3, IGNORE_LABEL], [0, 5, 4, 3], [2, 2, IGNORE_LABEL, 1]])
    epsilon = 0.1
    log_p = tf.nn.log_softmax(logits).numpy().astype(np.float64)
    mask = labels >= 0
    target = np.full(log_p.shape, epsilon / 6)  # q = (1 - ε) one_hot + ε / V
    np.put_along_axis(target, np.maximum(labels, 0)[..., None],
                      1 - epsilon + epsilon / 6, axis=-1)
    expected = -(target * log_p).sum(-1)[mask].sum()
    total, count = token_loss_sum(labels, logits, label_smoothing=epsilon)
    assert float(count) == mask.sum()
    assert float(total) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="label_smoothing"):
        LanguageModelLoss(label_smoothing=1.0)


def test_perplexity_accumulates_tokens_over_batches():
    metric = Perplexity()
    logits = tf.random.stateless_normal((2, 4, 9), seed=(3, 4))
    first = tf.constant([[4, 5, -100, -100], [5, 6, 7, -100]])
    second = tf.constant([[4, 4, 4, 4]] * 2)
    metric.update_state(first, logits)
    metric.update_state(second, logits)
    losses = [tf.nn.sparse_softmax_cross_entropy_with_logits(tf.maximum(y, 0), logits).numpy()[
        y.numpy() >= 0] for y in (first, second)]
    assert float(metric.result()) == pytest.approx(np.exp(np.concatenate(losses).mean()),
                                                   rel=1e-5)


def test_learning_rate_follows_the_schedule_through_the_optimizer():
    model_config, _, _ = tiny_configs()
    variable = keras.Variable(np.ones((2, 2), "float32"))
    train = TrainConfig(steps=10, warmup_steps=4, learning_rate=1.0, min_learning_rate=0.0)
    optimizer = make_optimizer(train, [variable], model_config.d_model)
    rates = []
    for _ in range(6):
        rates.append(float(optimizer.learning_rate))
        optimizer.apply([tf.zeros((2, 2))], [variable])
    np.testing.assert_allclose(rates[:4], [1 / 5, 2 / 5, 3 / 5, 4 / 5], rtol=1e-6)
    assert rates[4] == pytest.approx(1.0)
