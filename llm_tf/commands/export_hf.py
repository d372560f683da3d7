"""`llm-tf export-hf RUN --out DIR`: a run directory as a Hugging Face GPT-2 checkpoint.

    llm-tf export-hf runs/gpt2-tuned --out gpt2-tuned/
    # then, with transformers: GPT2LMHeadModel.from_pretrained("gpt2-tuned")

Writes `config.json`, `model.safetensors` (one tensor at a time), and for a
gpt2-kind tokenizer `vocab.json`, `merges.txt` and `tokenizer_config.json`. A
run the format cannot express (post-LN, sinusoidal or rotary positions, scaled
embeddings) is refused with the field named; a run whose tokenizer is another
kind needs `--weights-only` (docs/interop.md). Bad input: one line, exit code 2.
"""

from __future__ import annotations

import sys

from llm_tf.commands.common import OneLineParser, run_main


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        allow_abbrev=False, prog="llm-tf export-hf",
        description="Export a run directory as a Hugging Face GPT-2 checkpoint directory "
                    "(config.json, model.safetensors, vocab.json, merges.txt).")
    parser.add_argument("run_dir", help="run directory (config.json, tokenizer/, weights)")
    parser.add_argument("--out", required=True, help="the checkpoint directory to write")
    parser.add_argument("--weights-only", action="store_true",
                        help="for a run whose tokenizer is not gpt2: write the model alone")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a non-empty --out directory")
    return parser


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    from llm_tf.interop import write_checkpoint
    from llm_tf.interop.gpt2_format import check_expressible
    from llm_tf.rundir import RunDir
    from llm_tf.saving import load

    run_dir = RunDir.open(args.run_dir)
    try:
        check_expressible(run_dir.read_config().model)  # before loading any weights
    except ValueError as error:
        raise ValueError(f"{str(run_dir)!r} cannot be written as GPT-2: {error}") from None
    run = load(run_dir)
    out = write_checkpoint(run.model, run.tokenizer, args.out, weights_only=args.weights_only,
                           overwrite=args.overwrite)
    print(f"Exported {run_dir} to {out}: {', '.join(sorted(p.name for p in out.iterdir()))}")
    return 0


def main(argv=None) -> int:
    return run_main(_main, sys.argv[1:] if argv is None else list(argv))
