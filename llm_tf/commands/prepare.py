"""`llm-tf prepare`: tokenize a corpus once into shards that `llm-tf train --data DIR` reads.

    llm-tf prepare --data books/ --tokenizer sentencepiece --vocab-size 8000 --out data/books
    llm-tf prepare --data more_books/ --tokenizer-from runs/mine --out data/more  # a run's
    llm-tf prepare --data corpus.txt --out gs://bucket/corpus --shards 64          # any gfile
    llm-tf train --data data/books --preset small                                  # then train

The directory's layout and the reading side are described in `llm_tf/data/prepared.py`.
Bad input (a missing corpus, a non-empty --out, an unknown tokenizer, a --tokenizer-from
without a tokenizer) prints one line and exits with code 2.
"""

from __future__ import annotations

import os
import resource
import sys
import time

from llm_tf.commands.common import (
    OneLineParser,
    UsageError,
    check_tokenizer_from,
    import_tensorflow,
    quiet_tensorflow,
    run_main,
)
from llm_tf.config import TOKENIZERS


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="llm-tf prepare", allow_abbrev=False,
                     description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True,
                        help="corpus: 'builtin', a file/directory/glob, 'tfds:NAME'")
    parser.add_argument("--out", required=True, help="the prepared directory to write (new)")
    parser.add_argument("--tokenizer", choices=TOKENIZERS,
                        help="the tokenizer to learn from the corpus (default char)")
    parser.add_argument("--tokenizer-from", metavar="DIR",
                        help="use the tokenizer of this run (or prepared) directory instead")
    parser.add_argument("--vocab-size", type=int, default=8000,
                        help="WordPiece/SentencePiece vocabulary to learn (default 8000)")
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="the share at the end of the token stream held out (default 0.1)")
    parser.add_argument("--shards", type=int, default=16,
                        help="about this many training shards (default 16)")
    parser.add_argument("--workers", type=int,
                        help="tokenizer calls in parallel (default: tf.data's autotuner)")
    return parser


def _main(argv) -> int:
    quiet_tensorflow()
    args = build_parser().parse_args(argv)
    if args.tokenizer and args.tokenizer_from:
        raise UsageError("give --tokenizer (learn one) or --tokenizer-from (reuse one), not both.")
    if args.shards < 1 or (args.workers is not None and args.workers < 1):
        raise UsageError(f"--shards and --workers must be positive. Received: --shards "
                         f"{args.shards} --workers {args.workers}")
    if not 0 < args.val_fraction < 1:
        raise UsageError(f"--val-fraction must be in (0, 1). Received: {args.val_fraction}")
    if args.tokenizer_from:
        check_tokenizer_from(args.tokenizer_from)
    import_tensorflow()
    from llm_tf.data import load_corpus
    from llm_tf.data.prepared import TOKENIZER_DIR, join_path, read_tokenizer
    from llm_tf.data.shard_writer import check_out_dir, prepare, remove_partial
    from llm_tf.tokenizers import train_tokenizer

    # Before the corpus is read or a tokenizer learned (minutes for WordPiece on a big one).
    check_out_dir(args.out)
    corpus = load_corpus(args.data)
    started = time.perf_counter()
    if args.tokenizer_from:
        tokenizer = read_tokenizer(join_path(args.tokenizer_from, TOKENIZER_DIR))
        print(f"tokenizer: {tokenizer.kind}, vocabulary {tokenizer.vocab_size}, from "
              f"{args.tokenizer_from}", flush=True)
    else:
        kind = args.tokenizer or "char"
        tokenizer = train_tokenizer(kind, corpus, vocab_size=args.vocab_size if kind in (
            "wordpiece", "sentencepiece") else None)
        print(f"tokenizer: {kind}, vocabulary {tokenizer.vocab_size}, learned in "
              f"{time.perf_counter() - started:.1f} s", flush=True)

    def progress(tokens, seconds):
        print(f"  {tokens:,} tokens in {seconds:.0f} s ({tokens / seconds / 1e6:.2f} M tokens/s)",
              flush=True)

    created = not os.path.exists(args.out)
    try:
        manifest = prepare(corpus, tokenizer, args.out, val_fraction=args.val_fraction,
                           shards=args.shards, workers=args.workers, progress=progress)
    except BaseException:
        if created:
            remove_partial(args.out)
        raise
    seconds = time.perf_counter() - started
    files = getattr(corpus, "files", [])
    size_mb = sum(os.path.getsize(f) for f in files if os.path.exists(f)) / 2**20
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    speed = f", {size_mb / seconds:.1f} MB/s of text" if size_mb else ""
    print(f"prepared {args.out}: {manifest.num_train_tokens:,} training tokens in "
          f"{len(manifest.train)} shard(s), {manifest.num_val_tokens:,} validation tokens in "
          f"{len(manifest.val)}, {manifest.dtype}; {seconds:.1f} s{speed}; peak memory "
          f"{peak_mb:.0f} MB")
    return 0


def main(argv=None) -> int:
    return run_main(_main, sys.argv[1:] if argv is None else list(argv))
