"""Generation speed: document-style full recompute vs the KV-cached loop, eager / graph / XLA,
and the exported SavedModel. Prints a Markdown table and the ratios that docs/benchmarks.md reports.

    python benchmarks/generate.py                       # 256 and 1024 new tokens, batch 1 and 8
    python benchmarks/generate.py --new-tokens 64 --batch-sizes 1 --quick   # a smoke run

The model is small but has a context of 1040 tokens (16-token prompts + 1024 new
ones): vocab 260 (byte tokenizer), d_model 128, 4 heads, 4 layers, dff 512.
Decoding is greedy with EOS disabled (its embedding row is zeroed, so no row
stops early) and every path must produce the same tokens; the table says so.
Each timing is the best of `--repeats` runs after a warm-up call that traces and
compiles (first-call latencies are printed separately).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from machine import describe_machine  # benchmarks/machine.py

from llm_tf.config import ModelConfig  # noqa: E402
from llm_tf.export import export_model, load_saved_model  # noqa: E402
from llm_tf.generation import Generator, generate_reference  # noqa: E402
from llm_tf.models import TransformerLM  # noqa: E402
from llm_tf.tokenizers import ByteTokenizer  # noqa: E402

PROMPT_LENGTH = 16
PATHS = ("document-style (full recompute, tf.function)", "cached, eager",
         "cached, tf.function", "cached, tf.function + XLA", "exported SavedModel (XLA)")


def build_model(max_new_tokens: int) -> TransformerLM:
    tf.keras.utils.set_random_seed(0)
    config = ModelConfig(vocab_size=ByteTokenizer().vocab_size, d_model=128, num_heads=4,
                         num_layers=4, dff=512, max_length=PROMPT_LENGTH + max_new_tokens,
                         dropout=0.0)
    model = TransformerLM(config)
    model.build()
    table = model.embedding.token_embedding.embeddings
    table.assign(tf.tensor_scatter_nd_update(table, [[3]], tf.zeros((1, config.d_model))))
    return model


def timed(fn, repeats: int):
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="one repeat, for a smoke run")
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats
    print(f"Machine: {describe_machine()}")

    model = build_model(max(args.new_tokens))
    tokenizer = ByteTokenizer()
    with tempfile.TemporaryDirectory() as directory:
        start = time.perf_counter()
        export_model(model, tokenizer, os.path.join(directory, "saved_model"))
        print(f"export: {time.perf_counter() - start:.1f} s")
        loaded = load_saved_model(os.path.join(directory, "saved_model"))
        generators = {mode: Generator(model, compile=mode, eos_id=-1)
                      for mode in ("eager", "graph", "xla")}
        rng = np.random.default_rng(0)
        rows, first_call = [], {}
        for batch in args.batch_sizes:
            prompts = rng.integers(4, tokenizer.vocab_size, (batch, PROMPT_LENGTH)).tolist()
            runners = {  # (prompts bound now: the functions are called in this iteration)
                PATHS[0]: lambda n, p=prompts: generate_reference(model, p, n, eos_id=-1),
                PATHS[1]: lambda n, p=prompts: generators["eager"].generate_ids(p, n),
                PATHS[2]: lambda n, p=prompts: generators["graph"].generate_ids(p, n),
                PATHS[3]: lambda n, p=prompts: generators["xla"].generate_ids(p, n),
                PATHS[4]: lambda n, p=prompts: loaded.generate_ids(
                    tf.constant(p, tf.int32), n, 0.0, 0, 1.0, 0).numpy().tolist(),
            }
            for path, run in runners.items():  # warm-up: trace / compile for this batch size
                seconds, _ = timed(lambda run=run: run(2), 1)
                first_call[(path, batch)] = seconds
            for new_tokens in args.new_tokens:
                reference = None
                for path, run in runners.items():
                    # The eager loop takes minutes at 1024 tokens: once is enough.
                    seconds, tokens = timed(lambda run=run, n=new_tokens: run(n),
                                            1 if path == PATHS[1] else repeats)
                    assert all(len(row) == new_tokens for row in tokens), path
                    reference = tokens if reference is None else reference
                    rows.append((path, new_tokens, batch, batch * new_tokens / seconds,
                                 seconds, tokens == reference))
                    print(f"  {path:48s} new={new_tokens:5d} B={batch}: "
                          f"{batch * new_tokens / seconds:9.1f} tokens/s ({seconds:.2f} s)",
                          flush=True)

    print(f"\nMachine: {describe_machine().split('; load')[0]}; load average at end "
          f"{os.getloadavg()[0]:.1f}\n")
    print("| path | new tokens | batch | tokens/s | seconds | same tokens as full recompute |")
    print("|---|---:|---:|---:|---:|:-:|")
    for path, new_tokens, batch, speed, seconds, same in rows:
        print(f"| {path} | {new_tokens} | {batch} | {speed:,.0f} | {seconds:.2f} | "
              f"{'yes' if same else 'NO'} |")
    print("\nFirst call (trace + compile, 2 new tokens):")
    for (path, batch), seconds in first_call.items():
        print(f"  {path}, B={batch}: {seconds:.1f} s")

    speed = {(p, n, b): s for p, n, b, s, _, _ in rows}
    print("\nRatios:")
    for new_tokens in args.new_tokens:
        for batch in args.batch_sizes:
            recompute = speed[(PATHS[0], new_tokens, batch)]
            xla = speed[(PATHS[3], new_tokens, batch)]
            graph = speed[(PATHS[2], new_tokens, batch)]
            saved = speed[(PATHS[4], new_tokens, batch)]
            print(f"  new={new_tokens:5d} B={batch}: cached XLA / full recompute = "
                  f"{xla / recompute:6.1f}x (tf.function without XLA: {graph / recompute:5.1f}x); "
                  f"SavedModel time / in-memory XLA time = {xla / saved:4.2f}")


if __name__ == "__main__":
    main()
