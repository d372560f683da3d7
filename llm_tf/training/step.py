"""The train step and the evaluation step (design document §5.1), distribution-ready.

One optimizer step, on each replica (`strategy.run`):

    forward  (float32 logits) -> loss = Σ token losses / tokens in the *global* batch
    backward (tf.GradientTape)
    all-reduce the gradients (SUM): now every replica holds the global batch's gradient
    clip by global norm       (after the all-reduce: clipping per replica is another algorithm)
    optimizer.apply(g)

Keras 3 optimizers sum the gradients over the replicas again inside `apply`.
llm_tf's `AdamW` is told not to (`apply` runs in its `reduced_gradients()` block),
so the gradients cross the wire once. Any other Keras optimizer gets g / R, which its own sum
turns back into g (exactly for R = 2^k), at the price of a second all-reduce.
With one replica (the default strategy) the all-reduces are identities.

Gradient accumulation (`accumulate=N`): a step reads N micro-batches, counts the labelled
tokens of all of them on every replica first, then sums the N micro-batches' gradients of
Σ token losses / that global count — one batch N times larger, exactly (up to rounding),
in the memory of one micro-batch. Then all-reduce, clip and apply once.

Several steps per call (`run(iterator, n)`): a `tf.while_loop` of n steps inside one
`tf.function` (Keras' `steps_per_execution`), returning the n losses; Python and the
host sync once per call instead of once per step.

Mixed float16: the loss is multiplied by the `LossScaleOptimizer`'s scale, so
the gradients are too; clipping them at `clip_norm × scale` equals clipping the
unscaled ones at `clip_norm`, and the optimizer unscales (or skips the step and
lowers the scale when they overflowed — every replica decides alike, since the
gradients were all-reduced).
"""

from __future__ import annotations

import contextlib

import tensorflow as tf

from llm_tf.training.losses import check_label_smoothing, labelled, token_loss_sum

SUM = tf.distribute.ReduceOp.SUM


def _dense(gradient):
    # Embedding gradients arrive as IndexedSlices (one row per looked-up token);
    # the all-reduce, the norm and `g / R` want plain tensors.
    return tf.convert_to_tensor(gradient) if isinstance(gradient, tf.IndexedSlices) else gradient


class TrainStep:
    """`step(iterator)` takes one global batch from `iterator` and makes one optimizer update.

    Args:
        model: a Keras model returning logits (B, T, V); built inside `strategy.scope()`.
        optimizer: from `make_optimizer` (built inside the same scope).
        strategy: the `tf.distribute.Strategy` the model was built under.
        clip_norm: global gradient-norm clip; 0 disables it.
        jit_compile: compile the per-replica step with XLA.
        label_smoothing: ε of the loss (`losses.token_loss_sum`); labels < 0 carry no loss.
        accumulate: micro-batches (read from the iterator) per optimizer update.
        recompute: recompute each block's activations in the backward pass (the model's
            stack must support it: `TransformerLM.decoder.recompute`).

    Attributes:
        step: int64 variable, optimizer updates made (saved in checkpoints).

    Returns (of a call): {"loss": mean loss over the global batch, "grad_norm": the
    global gradient norm before clipping, "learning_rate": the rate this update
    used}, float32 scalars.
    """

    def __init__(self, model, optimizer, strategy, clip_norm=1.0, jit_compile=False,
                 label_smoothing=0.0, accumulate=1, recompute=False):
        if not isinstance(accumulate, int) or accumulate < 1:
            raise ValueError(f"`accumulate` must be a positive integer. Received: {accumulate!r}")
        if recompute:
            stack = getattr(model, "decoder", None)
            if not hasattr(stack, "recompute"):
                raise ValueError("`recompute`=True needs a model whose `decoder` stack can "
                                 f"recompute its blocks. Received: {type(model).__name__}")
            stack.recompute = True
        self.accumulate = accumulate
        self.model = model
        self.optimizer = optimizer
        self.strategy = strategy
        self.clip_norm = float(clip_norm)
        self.label_smoothing = check_label_smoothing(label_smoothing)
        self.loss_scaled = hasattr(optimizer, "scale_loss") and hasattr(optimizer, "dynamic_scale")
        inner = getattr(optimizer, "inner_optimizer", optimizer)  # under a LossScaleOptimizer
        self._reduced_gradients = getattr(inner, "reduced_gradients", None)
        self._optimizer_sums_again = self._reduced_gradients is None
        with strategy.scope():
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step",
                                    aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        replicas = strategy.num_replicas_in_sync
        # XLA compiles the whole replica step on one device; with several replicas
        # only the forward/backward pass (collectives stay outside the cluster).
        self._gradients = tf.function(self._compute_gradients,
                                      jit_compile=jit_compile and replicas > 1)
        self._replica_step = tf.function(self._replica_step_fn,
                                         jit_compile=jit_compile and replicas == 1)
        self._call = tf.function(self._distributed_step)
        self._run = tf.function(self._distributed_steps)

    def _compute_gradients(self, x, y, global_count):
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            logits = self.model(x, training=True)  # (B_replica, T, V) float32
            total, _ = token_loss_sum(y, logits, self.label_smoothing)
            loss = total / global_count  # this replica's share of the global mean
            scaled = self.optimizer.scale_loss(loss) if self.loss_scaled else loss
        gradients = [_dense(g) for g in tape.gradient(scaled, variables)]
        return loss, gradients

    def _accumulated_gradients(self, xs, ys, global_count):
        """Σ over the micro-batches xs[i], ys[i] of their gradients (a while loop: one
        micro-batch's activations alive at a time)."""
        variables = self.model.trainable_variables

        def body(i, loss, gradients):
            micro_loss, micro_gradients = self._gradients(xs[i], ys[i], global_count)
            return i + 1, loss + micro_loss, [g + m for g, m in zip(gradients, micro_gradients)]

        zeros = [tf.zeros(v.shape, v.dtype) for v in variables]
        _, loss, gradients = tf.while_loop(lambda i, *_: i < self.accumulate, body,
                                           (tf.constant(0), tf.constant(0.0), zeros))
        return loss, gradients

    def _replica_step_fn(self, x, y):
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync
        count = tf.reduce_sum(tf.cast(labelled(y), tf.float32))
        if replicas > 1:
            count = context.all_reduce(SUM, count)
        if self.accumulate == 1:
            loss, gradients = self._gradients(x, y, tf.maximum(count, 1.0))
        else:  # x, y: (N, B, T), the micro-batches stacked
            loss, gradients = self._accumulated_gradients(x, y, tf.maximum(count, 1.0))
        if replicas > 1:
            gradients = context.all_reduce(SUM, gradients)
        scale = (tf.cast(self.optimizer.dynamic_scale, tf.float32) if self.loss_scaled
                 else tf.constant(1.0))
        if self.clip_norm > 0:
            gradients, norm = tf.clip_by_global_norm(gradients, self.clip_norm * scale)
        else:
            norm = tf.linalg.global_norm(gradients)
        if replicas > 1 and self._optimizer_sums_again:
            gradients = [g / replicas for g in gradients]
        learning_rate = tf.cast(self.optimizer.learning_rate, tf.float32)  # for this update
        with self._reduced_gradients() if self._reduced_gradients else contextlib.nullcontext():
            self.optimizer.apply(gradients, self.model.trainable_variables)
        return loss, norm / scale, learning_rate

    def _distributed_step(self, iterator):
        if self.accumulate == 1:
            x, y = next(iterator)
        else:
            micro = [next(iterator) for _ in range(self.accumulate)]
            x, y = self.strategy.run(lambda *m: (tf.stack(m[0::2]), tf.stack(m[1::2])),
                                     args=tuple(t for pair in micro for t in pair))
        loss, norm, learning_rate = self.strategy.run(self._replica_step, args=(x, y))
        self.step.assign_add(1)
        mean = tf.distribute.ReduceOp.MEAN  # of values equal on every replica
        return {"loss": self.strategy.reduce(SUM, loss, axis=None),
                "grad_norm": self.strategy.reduce(mean, norm, axis=None),
                "learning_rate": self.strategy.reduce(mean, learning_rate, axis=None)}

    def _distributed_steps(self, iterator, n):
        losses = tf.TensorArray(tf.float32, size=n)
        metrics = {"loss": tf.constant(0.0), "grad_norm": tf.constant(0.0),
                   "learning_rate": tf.constant(0.0)}
        for i in tf.range(n):
            metrics = self._distributed_step(iterator)
            losses = losses.write(i, metrics["loss"])
        return {**metrics, "losses": losses.stack()}

    def __call__(self, iterator):
        """One optimizer step."""
        return self._call(iterator)

    def run(self, iterator, n: int):
        """`n` optimizer steps in one call: the last step's metrics, and "losses" (n,)."""
        return self._run(iterator, tf.constant(n, tf.int32))


class EvalStep:
    """`evaluate(dataset)` -> (mean loss over labelled positions, perplexity) over all its batches.

    `dataset` is a `tf.data.Dataset` of (x, y) global batches; it is distributed
    with the strategy and read to the end in one `tf.function` call. The loss is
    the plain cross-entropy (no label smoothing), so that runs compare.
    """

    def __init__(self, model, strategy, jit_compile=False):
        self.model = model
        self.strategy = strategy
        self._replica = tf.function(self._replica_fn, jit_compile=jit_compile)
        self._run = tf.function(self._run_fn)

    def _replica_fn(self, x, y):
        logits = self.model(x, training=False)
        return token_loss_sum(y, logits)

    def _run_fn(self, distributed):
        total = tf.constant(0.0, tf.float64)
        count = tf.constant(0.0, tf.float64)
        for x, y in distributed:
            batch_total, batch_count = self.strategy.run(self._replica, args=(x, y))
            # float64 accumulators: hundreds of batches of ~1e3 nats each.
            total += tf.cast(self.strategy.reduce(SUM, batch_total, axis=None), tf.float64)
            count += tf.cast(self.strategy.reduce(SUM, batch_count, axis=None), tf.float64)
        return total, count

    def __call__(self, distributed_dataset):
        total, count = self._run(distributed_dataset)
        if float(count) == 0:
            raise ValueError("The validation data has no labelled positions.")
        loss = float(total) / float(count)
        return loss, float(tf.exp(loss))
