"""Where a train step's time goes: the step taken apart, each part timed alone.

    python benchmarks/step_profile.py --preset tiny
    python benchmarks/step_profile.py --preset small --batch-size 16 --precision mixed_bfloat16
    python benchmarks/step_profile.py --preset tiny --trace /tmp/trace   # + a tf.profiler trace

Rows (median ms of `--repeats` calls, after warm-up; each call ends with a host sync):

* `forward`: logits and loss;
* `forward+backward`: the gradients too (what an optimizer step cannot avoid);
* `step`: `TrainStep` — gradients, clip, AdamW — called once per step from Python, as the
  loop does;
* `K steps per call`: the same `TrainStep` making K updates in one call (the loop inside
  the compiled function), per update;
* `matmuls only`: the model's matrix products alone (forward and backward shapes), the
  floor the step can approach.

Each for XLA off and on. `--trace DIR` also writes a `tf.profiler` trace of a few steps
(open with TensorBoard's profile plugin / xprof).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from llm_tf.config import get_preset  # noqa: E402
from llm_tf.models import TransformerLM  # noqa: E402
from llm_tf.training.losses import token_loss_sum  # noqa: E402
from llm_tf.training.optimizer import make_optimizer  # noqa: E402
from llm_tf.training.step import TrainStep  # noqa: E402


def timed(fn, repeats, warmup=3):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def matmul_floor(config, B, T, dtype, repeats):
    """The model's matmuls alone: per layer QKV, output, FFN in and out, scores and weighted
    sums; the tied head; each forward and its two backward products.

    Returns (ms, GFLOP per call). Every layer has its own weights: with shared ones Grappler's
    common-subexpression pass merges the layers' identical products into one, and the
    "floor" comes out `num_layers` times too low (this script's first version reported
    5.7 ms for `tiny`, 3× the 215 GFLOP/s peak)."""
    D, F, H, V = config.d_model, config.dff, config.num_heads, config.vocab_size
    Dh = D // H
    x = tf.cast(tf.random.normal((B * T, D)), dtype)
    h = tf.cast(tf.random.normal((B * T, F)), dtype)
    shapes = (("qkv", (D, 3 * D)), ("out", (D, D)), ("up", (D, F)), ("down", (F, D)))
    layers = [{name: tf.cast(tf.random.normal(shape), dtype) for name, shape in shapes}
              for _ in range(config.num_layers)]
    head = tf.cast(tf.random.normal((D, V)), dtype)
    qs = [tf.cast(tf.random.normal((B, H, T, Dh)), dtype) for _ in range(config.num_layers)]
    s = tf.cast(tf.random.normal((B, H, T, T)), dtype)
    flops = config.num_layers * (sum(3 * 2 * B * T * k * n for _, (k, n) in shapes)
                                 + 5 * 2 * B * H * T * T * Dh) + 3 * 2 * B * T * D * V

    @tf.function(jit_compile=False)
    def run():
        acc = []
        for weights, q in zip(layers, qs):
            for name, inp in (("qkv", x), ("out", x), ("up", x), ("down", h)):
                w = weights[name]
                y = tf.matmul(inp, w)                            # forward
                acc.append(tf.matmul(y, w, transpose_b=True))    # input gradient
                acc.append(tf.matmul(inp, y, transpose_a=True))  # weight gradient
            scores = tf.matmul(q, q, transpose_b=True)           # (B, H, T, T)
            acc.append(tf.matmul(s, q))                          # weighted sum
            acc += [tf.matmul(scores, q), tf.matmul(s, q, transpose_a=True),  # their grads
                    tf.matmul(scores, q), tf.matmul(s, q, transpose_a=True)]
        y = tf.matmul(x, head)
        acc += [tf.matmul(y, head, transpose_b=True), tf.matmul(x, y, transpose_a=True)]
        return tf.add_n([tf.reduce_sum(tf.cast(a[:1], tf.float32)) for a in acc])

    return timed(lambda: float(run()), repeats), flops / 1e9


def profile(args, jit):
    preset = get_preset(args.preset)
    config = preset.model
    B = args.batch_size or preset.data.batch_size
    T = preset.data.context_length
    keras.utils.set_random_seed(0)
    model = TransformerLM(config, dtype=None if args.precision == "float32" else args.precision)
    model.build((None, T))
    optimizer = make_optimizer(preset.train, model.trainable_variables, config.d_model)
    step = TrainStep(model, optimizer, tf.distribute.get_strategy(),
                     clip_norm=preset.train.clip_norm, jit_compile=jit)
    windows = tf.random.uniform((32, B, T + 1), 4, config.vocab_size, dtype=tf.int32)
    dataset = tf.data.Dataset.from_tensor_slices(windows).map(
        lambda w: (w[:, :-1], w[:, 1:])).repeat().prefetch(2)
    x, y = next(iter(dataset))
    variables = model.trainable_variables

    @tf.function(jit_compile=jit)
    def forward(x, y):
        total, count = token_loss_sum(y, model(x, training=True))
        return total / count

    @tf.function(jit_compile=jit)
    def forward_backward(x, y):
        with tf.GradientTape() as tape:
            total, count = token_loss_sum(y, model(x, training=True))
            loss = total / count
        gradients = tape.gradient(loss, variables)
        return loss, [tf.convert_to_tensor(g) for g in gradients]

    rows = {"forward": timed(lambda: float(forward(x, y)), args.repeats),
            "forward+backward": timed(lambda: float(forward_backward(x, y)[0]), args.repeats)}
    batches = iter(dataset)
    rows["step (one per call)"] = timed(lambda: float(step(batches)["loss"]), args.repeats)
    for k in args.k:
        rows[f"{k} steps per call (per step)"] = timed(
            lambda k=k: step.run(batches, k)["losses"].numpy(), max(3, args.repeats // k)) / k
    if args.trace and jit:
        tf.profiler.experimental.start(args.trace)
        for _ in range(5):
            float(step(batches)["loss"])
        tf.profiler.experimental.stop()
        summarize_trace(args.trace, steps=5)
    return rows


def summarize_trace(directory, steps, top=15):
    """Prints the ms per step of the busiest op kinds in a tf.profiler trace (its xplane.pb),
    summed over the compute threads (no TensorBoard plugin needed)."""
    import collections
    import glob
    import re

    from tensorflow.tsl.profiler.protobuf import xplane_pb2
    space = xplane_pb2.XSpace()
    with open(sorted(glob.glob(f"{directory}/**/*.xplane.pb", recursive=True))[-1], "rb") as f:
        space.ParseFromString(f.read())
    wrappers = ("ThunkExecutor", "SlinkyThreadPool", "ExecutorState", "CpuExecutable",
                "BlockUntilReady")
    totals = collections.Counter()
    for plane in space.planes:
        names = {k: v.name for k, v in plane.event_metadata.items()}
        for line in plane.lines:
            if "Eigen" not in line.name and "tf_Compute" not in line.name:
                continue
            for event in line.events:
                name = names.get(event.metadata_id, "?")
                if not name.startswith(wrappers):
                    totals[re.sub(r"([._]\d+)+$", "", name)] += event.duration_ps / 1e9 / steps
    print(f"  trace ({directory}), ms per step by op kind:")
    for name, ms in totals.most_common(top):
        print(f"    {ms:7.2f}  {name}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--k", type=int, nargs="*", default=[10])
    parser.add_argument("--jit", choices=("off", "on", "both"), default="both")
    parser.add_argument("--trace", help="write a tf.profiler trace of 5 XLA steps here")
    args = parser.parse_args()
    preset = get_preset(args.preset)
    B = args.batch_size or preset.data.batch_size
    threading = tf.config.threading
    print(f"{args.preset}, B={B}, T={preset.data.context_length}, {args.precision}; load "
          f"{os.getloadavg()[0]:.1f}; TF threads intra "
          f"{threading.get_intra_op_parallelism_threads()} inter "
          f"{threading.get_inter_op_parallelism_threads()} (0 = all cores)")
    dtype = tf.float32 if args.precision == "float32" else tf.bfloat16
    floor, gflop = matmul_floor(preset.model, B, preset.data.context_length, dtype,
                                args.repeats)
    print(f"  matmuls only: {floor:.1f} ms ({gflop:.2f} GFLOP, {gflop / floor * 1000:.0f} "
          "GFLOP/s)")
    for jit in {"off": [False], "on": [True], "both": [False, True]}[args.jit]:
        for name, ms in profile(args, jit).items():
            print(f"  XLA {'on ' if jit else 'off'} {name}: {ms:.1f} ms", flush=True)


if __name__ == "__main__":
    main()
