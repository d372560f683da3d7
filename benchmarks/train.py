"""Training speed: tokens/s and model FLOPs utilisation (MFU) per preset, precision and XLA.

    python benchmarks/train.py                                  # tiny and small, fp32 and bf16
    python benchmarks/train.py --presets tiny --steps 20 --jit both

MFU = (model FLOPs per token × tokens/s) / peak, where the peak is a measured
`tf.matmul` of two 2048×2048 matrices on the same machine, in the same precision,
right before and after each row (on a quiet 2-core machine of this kind ~440
GFLOP/s fp32 and ~830 bf16; on a shared one much less, and the load changes by
the minute, hence the paired measurement).
Model FLOPs per token, as nanoGPT's `estimate_mfu` (PaLM appendix B):
6·N for the weights' forward and backward (N = parameters without the position
table) + 12·L·H·Dh·T for attention scores and weighted sums.

Each configuration trains with the real `TrainStep` (AdamW, clip, schedule) on
random tokens, which cost the same as text; ms/step is the median of `--steps`
steps after `--warmup` steps (compilation excluded, reported separately).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from machine import describe_machine  # benchmarks/machine.py

from llm_tf.config import get_preset  # noqa: E402
from llm_tf.models import TransformerLM  # noqa: E402
from llm_tf.training.optimizer import make_optimizer  # noqa: E402
from llm_tf.training.step import TrainStep  # noqa: E402

MATMUL_SIZE = 2048


def matmul_peak(dtype, seconds=2.0) -> float:
    """FLOP/s of a square `tf.matmul` in `dtype` (best of a few timed batches of 10)."""
    a = tf.random.normal((MATMUL_SIZE, MATMUL_SIZE), dtype=tf.float32)
    a = tf.cast(a, dtype)

    @tf.function
    def ten(x):
        for _ in range(10):
            x = tf.matmul(x, a) * tf.cast(1e-3, dtype)  # keep values finite
        return x

    ten(a).numpy()
    best, start = float("inf"), time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        ten(a).numpy()
        best = min(best, time.perf_counter() - t)
    return 10 * 2 * MATMUL_SIZE ** 3 / best


def flops_per_token(model, config, context_length) -> float:
    parameters = model.count_params() - config.max_length * config.d_model  # no position table
    return 6 * parameters + 12 * config.num_layers * config.d_model * context_length


def measure(preset_name, precision, jit, steps, warmup, batch_size=None):
    preset = get_preset(preset_name)
    config, data, train = preset.model, preset.data, preset.train
    B, T = batch_size or data.batch_size, data.context_length
    keras.utils.set_random_seed(0)
    model = TransformerLM(config, dtype=None if precision == "float32" else precision)
    model.build((None, T))
    optimizer = make_optimizer(train, model.trainable_variables, config.d_model,
                               mixed_float16=precision == "mixed_float16")
    step = TrainStep(model, optimizer, tf.distribute.get_strategy(), clip_norm=train.clip_norm,
                     jit_compile=jit)
    tokens = tf.random.uniform((64, B, T + 1), 4, config.vocab_size, dtype=tf.int32)
    batches = iter(tf.data.Dataset.from_tensor_slices(tokens).map(
        lambda w: (w[:, :-1], w[:, 1:])).repeat().prefetch(2))
    t = time.perf_counter()
    float(step(batches)["loss"])
    compile_seconds = time.perf_counter() - t
    for _ in range(warmup):
        float(step(batches)["loss"])
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        float(step(batches)["loss"])
        times.append(time.perf_counter() - t)
    ms = 1000 * statistics.median(times)
    return {"params": model.count_params(), "tokens_per_step": B * T, "ms": ms,
            "tokens_per_sec": B * T / (ms / 1000), "compile_s": compile_seconds,
            "flops_per_token": flops_per_token(model, config, T)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", default="tiny,small")
    parser.add_argument("--precisions", default="float32,mixed_bfloat16")
    parser.add_argument("--jit", choices=("off", "on", "both"), default="both")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-size", type=int, help="override the presets' batch size "
                        "(nanoGPT's reference timing of `small` on this machine used batch 16)")
    args = parser.parse_args()
    print(describe_machine())
    print("(peak: the better of two `tf.matmul` measurements taken just before and just after "
          "each row, in that row's precision, so that both sides of MFU see the same load)\n")
    print("| preset | params | tokens/step | precision | XLA | compile s | ms/step | tokens/s "
          "| model GFLOP/s | matmul peak GFLOP/s | MFU |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    jits = {"off": [False], "on": [True], "both": [False, True]}[args.jit]
    for preset in args.presets.split(","):
        for precision in args.precisions.split(","):
            dtype = tf.float32 if precision == "float32" else tf.bfloat16
            for jit in jits:
                before = matmul_peak(dtype, seconds=1.0)
                r = measure(preset, precision, jit, args.steps, args.warmup, args.batch_size)
                peak = max(before, matmul_peak(dtype, seconds=1.0))
                achieved = r["flops_per_token"] * r["tokens_per_sec"]
                print(f"| {preset} | {r['params'] / 1e6:.2f} M | {r['tokens_per_step']} | "
                      f"{precision} | {'yes' if jit else 'no'} | {r['compile_s']:.1f} | "
                      f"{r['ms']:.1f} | {r['tokens_per_sec']:,.0f} | {achieved / 1e9:.1f} | "
                      f"{peak / 1e9:.0f} | {100 * achieved / peak:.1f}% |", flush=True)


if __name__ == "__main__":
    main()
