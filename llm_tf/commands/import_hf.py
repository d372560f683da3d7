"""`llm-tf import-hf DIR --run-dir OUT`: a GPT-2-family checkpoint as an llm_tf run directory.

    llm-tf import-hf gpt2/ --run-dir runs/gpt2      # config.json, model.safetensors, tokenizer
    llm-tf generate --run runs/gpt2 --prompt "Hello" --max-new-tokens 40
    llm-tf export runs/gpt2                         # the string-to-string SavedModel

DIR is a Hugging Face checkpoint directory (docs/interop.md says how to get one;
nothing is downloaded). The run directory gets `config.json` (the ModelConfig),
`tokenizer/` (kind "gpt2": vocab.json, merges.txt) and `model.weights.h5`, like a
trained run, so every command that takes a run takes it. Bad input prints one
line and exits with code 2; with --overwrite, an existing run is replaced only
after the checkpoint has been read whole.
"""

from __future__ import annotations

import sys

from llm_tf.commands.common import OneLineParser, run_main


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        allow_abbrev=False, prog="llm-tf import-hf",
        description="Import a GPT-2-architecture Hugging Face checkpoint (config.json, "
                    "model.safetensors, vocab.json + merges.txt or tokenizer.json) as a run "
                    "directory.")
    parser.add_argument("directory", help="the checkpoint directory")
    parser.add_argument("--run-dir", required=True, help="the run directory to write")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run that --run-dir holds")
    return parser


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    from llm_tf import weights
    from llm_tf.interop import read_checkpoint
    from llm_tf.rundir import RunConfig, RunDir

    if not args.overwrite:  # fail before the (long) read; --overwrite deletes only after it
        RunDir.create(args.run_dir)
    model, tokenizer, _ = read_checkpoint(args.directory)
    run_dir = RunDir.create(args.run_dir, overwrite=args.overwrite)
    tokenizer.save(run_dir.tokenizer_dir)
    weights.save(model, run_dir.weights_file)
    run_dir.write_config(RunConfig(model.config))  # last: a run directory only once complete
    c = model.config
    print(f"Imported {args.directory} into {run_dir}: GPT-2 with {c.num_layers} layers, "
          f"{c.num_heads} heads, d_model {c.d_model}, context {c.max_length}, vocabulary "
          f"{c.vocab_size} ({model.count_params():,} parameters). "
          f"Try: llm-tf generate --run {run_dir} --prompt \"Hello\"")
    return 0


def main(argv=None) -> int:
    return run_main(_main, sys.argv[1:] if argv is None else list(argv))
