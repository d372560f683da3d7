"""Fine-tuning on spam: frozen, LoRA and full against the same classifier from random weights.

    python benchmarks/fine_tuning.py [--work DIR] [--steps N] [--quick] [-- --field=value ...]

1. Pre-trains the `tiny` preset on the built-in corpus (`llm-tf train --preset tiny`), or
   reuses `DIR/pretrained` when it is complete.
2. Fine-tunes it on `spam.train.tsv` with `llm-tf finetune --task classify` and each method
   at its defaults (`llm_tf/fine_tuning/defaults.py`), and once more with
   `--pretrained_weights=false` (method full: the same classifier, tokenizer and steps,
   from N(0, 0.02)), scoring `spam.test.tsv`.
3. Prints a Markdown table: trainable parameters, median ms per step, accuracy and
   macro-F1 of the final model, and the majority-class baseline (docs/fine-tuning.md).

The data is `/work/shared/data` (or `$LLM_TF_SHARED_DATA`). Each run is a command in its own
process, one after the other; the load average is printed with the machine line.
Fields after `--` go to every `llm-tf finetune` (e.g. `-- --pooling=mean`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

from machine import describe_machine  # benchmarks/machine.py

DATA = Path(os.environ.get("LLM_TF_SHARED_DATA", "/work/shared/data"))
RUNS = (("frozen", "frozen", ()), ("lora", "lora", ()), ("full", "full", ()),
        ("full, from random init", "full", ("--pretrained_weights=false",)))


def llm_tf(*args) -> str:
    """Runs `python -m llm_tf ARGS`, echoing and returning its stdout."""
    done = subprocess.run([sys.executable, "-m", "llm_tf", *args], capture_output=True,
                          text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    if done.returncode != 0:
        sys.exit(f"llm-tf {args[0]} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def metrics(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def ms_per_step(run_dir: Path) -> float:
    """Median over the logged rows of batch tokens / tokens per second."""
    config = json.loads((run_dir / "config.json").read_text())
    tokens = config["data"]["batch_size"] * config["data"]["context_length"]
    speeds = [r["tokens_per_sec"] for r in metrics(run_dir) if r.get("tokens_per_sec")]
    return 1000 * tokens / statistics.median(speeds)


def trainable(stdout: str, run_dir: Path) -> int:
    """The trainable count `llm-tf finetune` prints ("0.83M parameters (16,642 trainable)");
    a run that trains everything prints none, and its count is the model's."""
    match = re.search(r"\(([\d,]+) trainable\)", stdout)
    if match:
        return int(match.group(1).replace(",", ""))
    from llm_tf import saving
    return saving.load(run_dir).model.count_params()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default="runs/fine_tuning", help="where the runs go")
    parser.add_argument("--pretrain-steps", type=int, default=None,
                        help="pre-training steps (default: the tiny preset's 2000)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke test: 20 pre-training steps, 10 fine-tuning steps")
    parser.add_argument("fields", nargs="*", help="--field=value for every finetune run")
    args = parser.parse_args()
    train_file, test_file = DATA / "spam.train.tsv", DATA / "spam.test.tsv"
    if not train_file.is_file():
        sys.exit(f"{train_file} not found: set LLM_TF_SHARED_DATA to the data folder")
    work = Path(args.work)
    print(describe_machine())

    pretrained = work / "pretrained"
    steps = ["--steps", "20"] if args.quick else (
        ["--steps", str(args.pretrain_steps)] if args.pretrain_steps else [])
    if not (pretrained / "model.weights.h5").is_file():
        out = llm_tf("train", "--preset", "tiny", "--data", "builtin", "--run-dir",
                     str(pretrained), "--overwrite", "--no-export", "--no-sample", *steps)
        print(out.strip().splitlines()[-1])
    rows = metrics(pretrained)
    print(f"pre-trained: {pretrained} (step {rows[-1]['step']}, val loss "
          f"{rows[-1]['val_loss']:.4f}, {ms_per_step(pretrained):.1f} ms/step)")

    extra = ["--steps=10"] if args.quick else []
    table = []
    for name, method, options in RUNS:
        run_dir = work / re.sub(r"\W+", "-", name).strip("-")
        out = llm_tf("finetune", "--from", str(pretrained), "--task", "classify", "--data",
                     str(train_file), "--eval-data", str(test_file), "--run-dir", str(run_dir),
                     "--method", method, "--overwrite", "--no-export", *options, *extra,
                     *args.fields)
        last = metrics(run_dir)[-1]
        config = json.loads((run_dir / "config.json").read_text())
        table.append((name, trainable(out, run_dir), ms_per_step(run_dir), config["train"]["steps"],
                      config["train"]["learning_rate"], last["accuracy"], last["macro_f1"],
                      last["majority_accuracy"]))
        print(out.strip().splitlines()[-1], flush=True)

    print()
    print("| method | trainable parameters | ms/step | steps | peak lr | accuracy | macro-F1 |")
    print("|---|---|---|---|---|---|---|")
    for name, count, ms, n, lr, accuracy, f1, _ in table:
        print(f"| {name} | {count:,} | {ms:.0f} | {n} | {lr:g} | {accuracy:.3f} | {f1:.3f} |")
    majority = table[0][-1]
    print(f"| always the majority class (ham) | 0 | – | – | – | {majority:.3f} | "
          f"{2 * majority / (1 + majority) / 2:.3f} |")
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
