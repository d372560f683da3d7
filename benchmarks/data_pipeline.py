"""Streams a generated text file through a tokenizer and the LM pipeline; prints speed and memory.

    python benchmarks/data_pipeline.py                 # 500 MB, char tokenizer
    python benchmarks/data_pipeline.py --size-mb 50 --tokenizer byte

The file is made of lines of the built-in corpus in a seeded random order, so
it has the built-in corpus's characters and statistics but none of its
repetition period. The run:

1. counts the token stream (the pass `make_lm_datasets` needs for its split),
2. reads one epoch of training batches (streamed: windows, shuffle buffer, batch),
3. reads the whole validation split,

and reports tokens/s for each and the peak resident memory against the
baseline after imports (the issue's bound: growth under 300 MB).
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


from llm_tf import DataConfig  # noqa: E402
from llm_tf.data import build_lm_data, builtin_text, load_corpus  # noqa: E402
from llm_tf.tokenizers import train_tokenizer  # noqa: E402

LIMIT_MB = 300


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def generate(path: str, size_mb: int, seed: int = 0) -> None:
    lines = builtin_text().splitlines(keepends=True)
    rng = random.Random(seed)
    target, written = size_mb * 2**20, 0
    with open(path, "w", encoding="utf-8") as f:
        while written < target:
            block = "".join(rng.choices(lines, k=4096))
            f.write(block)
            written += len(block.encode("utf-8"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--tokenizer", default="char", choices=["char", "byte"])
    parser.add_argument("--context-length", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--path", help="use (or create) this file instead of a temporary one")
    args = parser.parse_args(argv)

    path = args.path or os.path.join(tempfile.gettempdir(), f"llm_tf_bench_{args.size_mb}mb.txt")
    if not os.path.exists(path):
        start = time.perf_counter()
        generate(path, args.size_mb)
        print(f"generated {path} in {time.perf_counter() - start:.1f} s")
    size_mb = os.path.getsize(path) / 2**20
    tokenizer = train_tokenizer(args.tokenizer, builtin_text())
    corpus = load_corpus(path)
    config = DataConfig(source=path, tokenizer=args.tokenizer,
                        context_length=args.context_length, batch_size=args.batch_size)
    baseline = rss_mb()
    print(f"file {size_mb:.0f} MB, {tokenizer!r}, T={config.context_length}, "
          f"B={config.batch_size}; RSS after imports and tokenizer: {baseline:.0f} MB")

    start = time.perf_counter()
    corpus.validate()
    print(f"UTF-8 check: {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    data = build_lm_data(config, tokenizer, corpus=corpus, epochs=1)
    seconds = time.perf_counter() - start
    total = data.num_train_tokens + data.num_val_tokens
    print(f"count pass: {total:,} tokens in {seconds:.1f} s = "
          f"{total / seconds / 1e6:.2f} M tokens/s (streaming={data.streaming}; "
          f"RSS now {rss_mb():.0f} MB)")

    for name, dataset in (("train epoch", data.train), ("validation", data.val)):
        start, batches = time.perf_counter(), 0
        for _ in dataset:
            batches += 1
        seconds = time.perf_counter() - start
        tokens = batches * config.batch_size * config.context_length
        print(f"{name}: {batches:,} batches, {tokens:,} tokens in {seconds:.1f} s = "
              f"{tokens / seconds / 1e6:.2f} M tokens/s (RSS now {rss_mb():.0f} MB)")

    peak = peak_rss_mb()
    growth = peak - baseline
    verdict = "OK" if growth < LIMIT_MB else "OVER"
    print(f"peak RSS {peak:.0f} MB, growth over baseline {growth:.0f} MB "
          f"({verdict}: limit {LIMIT_MB} MB)")
    return 0 if growth < LIMIT_MB else 1


if __name__ == "__main__":
    sys.exit(main())
