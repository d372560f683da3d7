"""Prepared data at scale: `llm-tf prepare` throughput and memory, and `llm-tf train --data DIR`
time to first step and step time, for a big and a small generated corpus.

    python benchmarks/prepared_data.py                      # 2 GB and 20 MB, under /tmp
    python benchmarks/prepared_data.py --big-mb 200 --keep  # smaller; keep the files

The corpora are lines of the built-in corpus in a seeded random order
(`benchmarks/data_pipeline.py`'s generator). Every command runs in a fresh process, as a
user runs it; the script reads their output:

1. `llm-tf prepare --tokenizer byte` on each corpus: MB of text per second, peak resident
   memory (the command prints `ru_maxrss`).
2. `llm-tf train --preset tiny --data DIR` (prepared, 2 GB and 20 MB) and `--data FILE`
   (the 20 MB text, which the text path holds in memory): seconds from process start to the
   end of the first step, then the median ms/step of the logged intervals after it.

Everything it wrote is removed at the end (unless `--keep`).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from data_pipeline import generate  # benchmarks/data_pipeline.py


def run(command, env=None):
    """Runs an `llm-tf` command; returns (stdout lines with their times since start, seconds)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=env)
    lines = []
    for line in process.stdout:
        lines.append((time.perf_counter() - started, line.rstrip()))
    if process.wait():
        sys.exit(f"failed: {' '.join(command)}\n" + "\n".join(t for _, t in lines[-20:]))
    return lines, time.perf_counter() - started


def prepare(text, out, shards):
    lines, seconds = run([sys.executable, "-m", "llm_tf", "prepare", "--data", text, "--out", out,
                          "--tokenizer", "byte", "--shards", str(shards)])
    last = lines[-1][1]
    peak = float(re.search(r"peak memory (\d+) MB", last).group(1))
    return seconds, peak, last


def train(data, run_dir, steps):
    # A prepared directory brings its tokenizer (naming one again is refused); text learns it.
    tokenizer = [] if os.path.isdir(data) else ["--tokenizer", "byte"]
    lines, seconds = run([sys.executable, "-m", "llm_tf", "train", "--preset", "tiny",
                          "--data", data, *tokenizer, "--run-dir", run_dir,
                          "--steps", str(steps), "--log_interval=10", "--eval_batches=2",
                          "--no-sample", "--no-export"])
    first = next(t for t, text in lines if "compiled and ran the first step" in text)
    ms = [float(m.group(1)) for _, text in lines
          if (m := re.search(r"([\d.]+) ms/step", text))]
    return first, statistics.median(ms[1:] or ms), seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--big-mb", type=int, default=2048)
    parser.add_argument("--small-mb", type=int, default=20)
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2,
                        help="times each `train` row runs, alternating with the others")
    parser.add_argument("--dir", default=tempfile.gettempdir())
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="llm_tf_prepared_bench_", dir=args.dir)
    print(f"{os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.2f} at start; in {work}",
          flush=True)
    try:
        results = {}
        for name, size in (("big", args.big_mb), ("small", args.small_mb)):
            text = os.path.join(work, f"{name}.txt")
            started = time.perf_counter()
            generate(text, size)
            mb = os.path.getsize(text) / 2**20
            print(f"{name}: generated {mb:.0f} MB in {time.perf_counter() - started:.0f} s",
                  flush=True)
            seconds, peak, summary = prepare(text, os.path.join(work, f"{name}.prepared"),
                                             args.shards)
            results[name] = {"text": text, "mb": mb}
            print(f"  prepare: {seconds:.1f} s wall = {mb / seconds:.1f} MB/s, peak RSS "
                  f"{peak:.0f} MB\n  {summary}", flush=True)
            if name == "big" and not args.keep:
                os.remove(text)  # the shards hold it now; keep the disk free
        rows = [("prepared, big", os.path.join(work, "big.prepared")),
                ("prepared, small", os.path.join(work, "small.prepared")),
                ("text in memory, small", results["small"]["text"])]
        for label, data in rows * args.rounds:  # alternating, on the same machine moment
            first, ms, seconds = train(data, os.path.join(work, "run"), args.steps)
            shutil.rmtree(os.path.join(work, "run"))
            print(f"  train --data ({label}): first step done {first:.1f} s after start, "
                  f"{ms:.1f} ms/step (median of logged intervals), {seconds:.0f} s in all",
                  flush=True)
        print(f"load average {os.getloadavg()[0]:.2f} at end")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
