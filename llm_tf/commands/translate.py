"""`llm-tf translate`: sentences translated by a trained translation run or its SavedModel.

    llm-tf translate --run runs/de-en "Ich habe Hunger." "Wo ist der Bahnhof?"
    llm-tf translate --run runs/de-en --beam-size 4 --length-penalty 0.6 "Ich habe Hunger."
    llm-tf translate --saved-model runs/de-en/saved_model "Ich habe Hunger."
    echo "Ich habe Hunger." | llm-tf translate --run runs/de-en        # sources from stdin

Prints one translation a line, in the order given.
"""

from __future__ import annotations

import argparse
import sys

from llm_tf.commands.common import OneLineParser, UsageError, run_main


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="llm-tf translate", allow_abbrev=False,
                           description="Translate sentences with a translation run (greedy or "
                                       "beam search); one translation a line.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", metavar="RUN_DIR", help="a run of llm-tf train --task translation")
    source.add_argument("--saved-model", metavar="DIR", help="its SavedModel (llm-tf export)")
    parser.add_argument("texts", nargs="*", help="sentences (default: one a line from stdin)")
    parser.add_argument("--beam-size", type=int, default=1, help="1 = greedy (the default)")
    parser.add_argument("--length-penalty", type=float, default=0.6,
                        help="GNMT length penalty alpha (default 0.6)")
    return parser


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    if args.beam_size < 1:
        raise UsageError(f"--beam-size must be >= 1. Received: {args.beam_size}")
    if args.length_penalty < 0:
        raise UsageError(f"--length-penalty must be >= 0. Received: {args.length_penalty}")
    texts = args.texts or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not texts:
        raise UsageError("nothing to translate: give sentences, or lines on stdin.")
    if args.saved_model:
        import tensorflow as tf

        from llm_tf.export import load_saved_model
        translator = load_saved_model(args.saved_model, function="translate")
        out = translator.translate(tf.constant(texts), tf.constant(args.beam_size),
                                   tf.constant(args.length_penalty, tf.float32))
        translations = [t.decode("utf-8", errors="replace") for t in out.numpy()]
    else:
        from llm_tf.generation.translator import Translator
        from llm_tf.rundir import RunDir
        from llm_tf.saving import load
        run_dir = RunDir.open(args.run)
        if run_dir.read_config().task != "translation":
            raise UsageError(f"{args.run!r} is a {run_dir.read_config().task!r} run, not a "
                             "translation run (llm-tf generate makes text with a language model).")
        run = load(run_dir)
        translations = Translator(run.model, run.tokenizer).translate(
            texts, beam_size=args.beam_size, length_penalty=args.length_penalty)
    for text in translations:
        print(text)
    return 0


def main(argv=None) -> int:
    return run_main(_main, sys.argv[1:] if argv is None else list(argv))
