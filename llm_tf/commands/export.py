"""`llm-tf export RUN_DIR [OUT_DIR] [--no-xla]`: a run directory as a SavedModel that takes
strings (a language model's generates text, a translator's translates, a classifier's
returns labels and probabilities)."""

from __future__ import annotations

import sys

from llm_tf.commands.common import OneLineParser, run_main


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog="llm-tf export",
        description="Export a run directory as a SavedModel that takes strings "
                    "(loadable with TensorFlow alone).")
    parser.add_argument("run_dir", help="run directory (config.json, tokenizer/, weights)")
    parser.add_argument("out_dir", nargs="?", default=None,
                        help="output directory (default: RUN_DIR/saved_model)")
    parser.add_argument("--no-xla", action="store_true",
                        help="do not compile the decode loop with XLA")
    return parser


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    from llm_tf.export import README_ASSET, SIGNATURES_BY_TASK, export_run
    from llm_tf.rundir import RunDir

    run_dir = RunDir.open(args.run_dir)
    out = export_run(run_dir, args.out_dir, jit_compile=not args.no_xla)
    signatures = SIGNATURES_BY_TASK[run_dir.read_config().task]
    print(f"Exported to {out}  (signatures: {', '.join(signatures)}; "
          f"see {out / 'assets' / README_ASSET})")
    return 0


def main(argv=None) -> int:
    return run_main(_main, sys.argv[1:] if argv is None else list(argv))
