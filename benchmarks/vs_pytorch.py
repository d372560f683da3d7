"""llm_tf against nanoGPT in PyTorch: the same model and training settings, run alternately.

    python benchmarks/vs_pytorch.py                       # tiny and small, float32 and bfloat16
    python benchmarks/vs_pytorch.py --configs tiny --precisions float32 --pairs 1  # a quick look

Needs `torch` (`pip install torch`; CPU build), an optional benchmark dependency.

What runs. Each measurement is a fresh subprocess (same interpreter, same environment) that
trains from scratch and exits, alternately PyTorch, llm_tf, PyTorch, llm_tf, ... (`--pairs`
pairs per configuration), so both sides see the same machine load:

* **PyTorch**: `benchmarks/nanogpt.py`, nanoGPT's `model.py` and `train.py` loop transcribed
  (eager, `--compile=False` as nanoGPT's CPU recipe; `torch.set_num_threads(--threads)`);
  bfloat16 is `torch.autocast("cpu", dtype=torch.bfloat16)`.
* **llm_tf**: `llm_tf.training.train(...)` — the code path of `llm-tf train`, with the preset's
  own choices (XLA, steps per call, ...), its tf.data pipeline and its reporting (metrics,
  TensorBoard); bfloat16 is `precision="mixed_bfloat16"`.

Both train on the same text (`--data`, default tiny Shakespeare from `../shared/data/`, else
CPython's built-in documentation), character-level, the first 90% for training, with the
preset's hyper-parameters (lr, warm-up, cosine to `min_lr` at the last step, β2 0.99, weight
decay 0.1 on matrices, clip 1.0, dropout) and the same number of steps and log interval. Each
side syncs and prints its loss every `--log-interval` steps, as nanoGPT does.

What is measured. The wall time between consecutive log lines, divided by the steps between
them (everything a step costs: data, the step, logging), over the intervals after the first
`--warmup` steps (compilation and warm-up excluded); per run the median, per side the median
over its runs. tokens/s = B·T / (ms/step). MFU = FLOPs per token (nanoGPT's estimate:
6N + 12·L·H·Dh·T) × tokens/s / peak, the peak being a 2048×2048 `tf.matmul` in the same
precision, measured in subprocesses during this run (the best of those measurements).

Same loss curve: each run ends with the loss over the whole validation split in
non-overlapping windows (tiny; `small` runs too few steps for that to mean anything, so only
its last training losses are printed), and the training losses at matching steps are printed
side by side (mean over runs).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED_TEXT = os.path.join(HERE, "..", "..", "shared", "data", "tinyshakespeare.txt")

# The presets' settings, spelled once for both sides (llm_tf reads its own preset; these
# are what nanoGPT gets, and the worker checks that the two agree).
CONFIGS = {
    "tiny": dict(n_layer=4, n_head=4, n_embd=128, block_size=64, bias=False, dropout=0.0,
                 batch_size=12, learning_rate=1e-3, min_lr=1e-4, warmup_iters=100,
                 steps=500, warmup=50),
    # nanoGPT's shakespeare_char trains at batch 64; on 2 cores a step takes seconds, so the
    # benchmark's default is batch 16 (the data README's reference timing), on both sides.
    "small": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, bias=False, dropout=0.2,
                  batch_size=16, learning_rate=1e-3, min_lr=1e-4, warmup_iters=100,
                  steps=30, warmup=5),
}
PRECISIONS = ("float32", "bfloat16")


def read_text(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


# --- the two workers (each runs in its own fresh process) ----------------------------------

def torch_worker(args) -> dict:
    import nanogpt
    import numpy as np
    import torch
    torch.set_num_threads(args.threads)
    cfg = dict(CONFIGS[args.config], batch_size=args.batch_size)
    text = read_text(args.data)
    chars = sorted(set(text))                       # nanoGPT's shakespeare_char/prepare.py
    stoi = {ch: i for i, ch in enumerate(chars)}
    ids = np.array([stoi[c] for c in text], dtype=np.uint16)
    n = len(ids)
    train_data, val_data = ids[:int(n * 0.9)], ids[int(n * 0.9):]
    model_args = dict(n_layer=cfg["n_layer"], n_head=cfg["n_head"], n_embd=cfg["n_embd"],
                      block_size=cfg["block_size"], bias=cfg["bias"], vocab_size=len(chars),
                      dropout=cfg["dropout"])
    logs = []
    model = nanogpt.train(
        model_args, train_data, batch_size=cfg["batch_size"], max_iters=args.steps - 1,
        lr_decay_iters=args.steps, learning_rate=cfg["learning_rate"], min_lr=cfg["min_lr"],
        warmup_iters=cfg["warmup_iters"], log_interval=args.log_interval, dtype=args.precision,
        seed=args.seed, on_log=lambda it, loss: logs.append((it + 1, loss, time.perf_counter())))
    val_loss = None
    if args.val:
        val_loss = nanogpt.whole_split_loss(model, val_data, cfg["block_size"],
                                            cfg["batch_size"], args.precision)
    return {"logs": logs, "val_loss": val_loss, "threads": torch.get_num_threads(),
            "flops_per_token": model.flops_per_token(cfg["block_size"]),
            "version": f"torch {torch.__version__}"}


class _TimedLines:
    """A text stream that stamps the time of each `step N/M: loss L` line llm_tf prints."""

    PATTERN = re.compile(r"step (\d+)/\d+: loss (\S+),")

    def __init__(self, echo):
        self.logs, self.echo = [], echo

    def write(self, text):
        now = time.perf_counter()
        for line in text.splitlines():
            match = self.PATTERN.match(line)
            if match:
                self.logs.append((int(match.group(1)), float(match.group(2)), now))
        self.echo.write(text)

    def flush(self):
        self.echo.flush()

    def isatty(self):
        return False


def llm_tf_worker(args) -> dict:
    import tensorflow as tf

    from llm_tf.config import get_preset
    from llm_tf.training import train
    cfg = CONFIGS[args.config]
    preset = get_preset(args.config)
    model, data, train_config = preset.model, preset.data, preset.train
    expected = dict(num_layers=cfg["n_layer"], num_heads=cfg["n_head"], d_model=cfg["n_embd"],
                    max_length=cfg["block_size"], use_bias=cfg["bias"],
                    dropout=cfg["dropout"], dff=4 * cfg["n_embd"])
    actual = {k: getattr(model, k) for k in expected}
    assert actual == expected, f"the preset changed: {actual} != {expected}"
    assert (train_config.learning_rate, train_config.min_learning_rate,
            train_config.warmup_steps) == (cfg["learning_rate"], cfg["min_lr"],
                                           cfg["warmup_iters"]), "the preset changed"
    data = data.replace(source=args.data, tokenizer="char", batch_size=args.batch_size,
                        context_length=cfg["block_size"], seed=args.seed)
    train_config = train_config.replace(
        steps=args.steps, log_interval=args.log_interval, eval_interval=args.steps,
        eval_batches=0 if args.val else 1, seed=args.seed,
        precision="float32" if args.precision == "float32" else "mixed_bfloat16")
    stream = _TimedLines(sys.stderr)
    with tempfile.TemporaryDirectory() as run_dir:
        run = train(model, data, train_config, os.path.join(run_dir, "run"), stream=stream,
                    tty=False)
        T = cfg["block_size"]
        parameters = run.model.count_params() - model.max_length * model.d_model
        flops = 6 * parameters + 12 * model.num_layers * model.d_model * T
    return {"logs": stream.logs, "val_loss": run.result.val_loss if args.val else None,
            "threads": tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count(),
            "flops_per_token": flops, "jit_compile": train_config.jit_compile,
            "version": f"tensorflow {tf.__version__}"}


def peak_worker(args) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, HERE)
    import tensorflow as tf
    from train import matmul_peak  # benchmarks/train.py
    return {"float32": matmul_peak(tf.float32), "bfloat16": matmul_peak(tf.bfloat16)}


# --- the driver ----------------------------------------------------------------------------

def run_worker(kind, args, config=None, precision=None) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--worker", kind,
               "--data", args.data, "--threads", str(args.threads),
               "--log-interval", str(args.log_interval), "--seed", str(args.seed)]
    if config:
        c = CONFIGS[config]
        command += ["--config", config, "--precision", precision,
                    "--steps", str(args.steps or c["steps"]),
                    "--batch-size", str(args.small_batch if config == "small"
                                        else c["batch_size"])]
        if config == "tiny":
            command.append("--val")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=os.pathsep.join(
        [HERE, os.path.dirname(HERE), os.environ.get("PYTHONPATH", "")]))
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        done = subprocess.run(command + ["--out", out.name], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
        if done.returncode:
            sys.exit(f"{kind} worker failed ({' '.join(command)}):\n{done.stderr[-3000:]}")
        with open(out.name) as f:
            return json.load(f)


def interval_ms(logs, warmup):
    """ms/step of each log interval that starts at or after step `warmup`."""
    intervals = [1000 * (t1 - t0) / (s1 - s0)
                 for (s0, _, t0), (s1, _, t1) in zip(logs, logs[1:]) if s0 >= warmup]
    if not intervals:
        sys.exit(f"no log interval starts after the {warmup} warm-up steps (logged at steps "
                 f"{[s for s, _, _ in logs]}): raise --steps or lower --log-interval")
    return intervals


def summarise(runs, warmup):
    medians = [statistics.median(interval_ms(r["logs"], warmup)) for r in runs]
    return statistics.median(medians), medians


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", default="tiny,small")
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--pairs", type=int, default=3, help="A/B pairs per configuration")
    parser.add_argument("--steps", type=int, help="steps per run (default: tiny 500, small 30)")
    parser.add_argument("--log-interval", type=int, default=10)
    parser.add_argument("--small-batch", type=int, default=CONFIGS["small"]["batch_size"])
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="PyTorch's intra-op threads (default: the core count)")
    parser.add_argument("--data", default=None, help="a UTF-8 text file (default: tiny "
                        "Shakespeare from ../shared/data, else the built-in corpus)")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--json", help="also write every run's raw figures here")
    # worker mode (internal)
    parser.add_argument("--worker", choices=("torch", "llm_tf", "peak"), help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--precision", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--val", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        result = {"torch": torch_worker, "llm_tf": llm_tf_worker, "peak": peak_worker}[
            args.worker](args)
        with open(args.out, "w") as f:
            json.dump(result, f)
        return 0

    temporary = None
    if args.data is None:
        if os.path.exists(SHARED_TEXT):
            args.data = os.path.abspath(SHARED_TEXT)
        else:
            from pydoc_data import topics  # llm_tf's built-in corpus, without TensorFlow
            temporary = tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False)
            temporary.write("".join(topics.topics[k] for k in sorted(topics.topics)))
            temporary.close()
            args.data = temporary.name
    try:
        return _drive(args)
    finally:
        if temporary:
            os.unlink(temporary.name)


def _drive(args) -> int:
    configs = args.configs.split(",")
    precisions = args.precisions.split(",")
    load = os.getloadavg()
    print(f"{os.cpu_count()} CPU(s); load average at start {load[0]:.2f}; data {args.data}; "
          f"{args.pairs} pair(s) per row, PyTorch first in each pair; log interval "
          f"{args.log_interval}; PyTorch threads {args.threads}", flush=True)
    peaks = [run_worker("peak", args)]
    results = {}
    for config in configs:
        c = CONFIGS[config]
        steps = args.steps or c["steps"]
        warmup = min(c["warmup"], steps // 2)
        for precision in precisions:
            runs = {"torch": [], "llm_tf": []}
            for pair in range(args.pairs):
                for side in ("torch", "llm_tf"):
                    r = run_worker(side, args, config, precision)
                    runs[side].append(r)
                    ms = statistics.median(interval_ms(r["logs"], warmup))
                    print(f"  {config} {precision} pair {pair + 1} {side:>6}: {ms:8.1f} ms/step"
                          + (f", val loss {r['val_loss']:.4f}" if r["val_loss"] else ""),
                          flush=True)
            results[(config, precision)] = (runs, warmup, steps)
        peaks.append(run_worker("peak", args))
    peak = {p: max(m[p] for m in peaks) for p in PRECISIONS}
    load_end = os.getloadavg()
    first = next(iter(results.values()))[0]
    print(f"\n{first['torch'][0]['version']} ({first['torch'][0]['threads']} threads) vs "
          f"llm_tf on {first['llm_tf'][0]['version']}; matmul peak (2048², best of "
          f"{len(peaks)}): {peak['float32'] / 1e9:.0f} GFLOP/s float32, "
          f"{peak['bfloat16'] / 1e9:.0f} GFLOP/s bfloat16; load average {load[0]:.2f} at start, "
          f"{load_end[0]:.2f} at end\n")
    print("| config | precision | B×T | steps | PyTorch ms/step | llm_tf ms/step | PyTorch tok/s "
          "| llm_tf tok/s | **speed-up** | PyTorch MFU | llm_tf MFU | val loss PyTorch | "
          "val loss llm_tf |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    raw = {}
    for (config, precision), (runs, warmup, steps) in results.items():
        c = CONFIGS[config]
        batch = args.small_batch if config == "small" else c["batch_size"]
        tokens = batch * c["block_size"]
        row = {}
        for side in ("torch", "llm_tf"):
            ms, medians = summarise(runs[side], warmup)
            vals = [r["val_loss"] for r in runs[side] if r["val_loss"] is not None]
            row[side] = dict(ms=ms, medians=medians, tok_s=tokens / ms * 1000,
                             mfu=runs[side][0]["flops_per_token"] * tokens / ms * 1000
                             / peak[precision],
                             val=statistics.mean(vals) if vals else None)
        val = lambda v: "—" if v is None else f"{v:.4f}"  # noqa: E731
        t, m = row["torch"], row["llm_tf"]
        print(f"| {config} | {precision} | {batch}×{c['block_size']} | {steps} | "
              f"{t['ms']:.1f} | {m['ms']:.1f} | {t['tok_s']:,.0f} | {m['tok_s']:,.0f} | "
              f"**{t['ms'] / m['ms']:.2f}×** | {100 * t['mfu']:.1f}% | {100 * m['mfu']:.1f}% | "
              f"{val(t['val'])} | {val(m['val'])} |")
        raw[f"{config}/{precision}"] = {side: {**row[side], "runs": runs[side]}
                                        for side in row}
    print("\nPer-run medians (ms/step), in run order:")
    for key, sides in raw.items():
        print(f"  {key}: PyTorch {[round(x, 1) for x in sides['torch']['medians']]}, "
              f"llm_tf {[round(x, 1) for x in sides['llm_tf']['medians']]}")
    print("\nTraining loss at matching steps (mean over runs; PyTorch / llm_tf):")
    for key, sides in raw.items():
        curves = [_mean_curve(sides[s]["runs"]) for s in ("torch", "llm_tf")]
        common = sorted(set(curves[0]) & set(curves[1]))
        shown = common[::max(1, len(common) // 6)] + common[-1:]
        print(f"  {key}: " + ", ".join(f"step {s}: {curves[0][s]:.3f} / {curves[1][s]:.3f}"
                                       for s in dict.fromkeys(shown)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"peak": peak, "load": [load, load_end], "results": raw}, f)
    return 0


def _mean_curve(runs):
    """step -> mean loss over runs, for steps every run logged (nanoGPT logs after update 1,
    11, 21, ...; llm_tf after 10, 20, ...: matched to the nearest multiple of 10)."""
    by_step = {}
    for r in runs:
        for step, loss, _ in r["logs"]:
            by_step.setdefault(10 * round(step / 10), []).append(loss)
    return {s: statistics.mean(v) for s, v in by_step.items() if len(v) == len(runs) and s}


if __name__ == "__main__":
    sys.exit(main())
