"""`llm-tf`: one command with subcommands, each a module of `llm_tf.commands`.

    llm-tf train     ...  -> llm_tf.commands.train.main
    llm-tf generate  ...  -> llm_tf.commands.generate.main
    llm-tf export    ...  -> llm_tf.commands.export.main
    llm-tf evaluate  ...  -> llm_tf.commands.evaluate.main
    llm-tf prepare   ...  -> llm_tf.commands.prepare.main
    llm-tf import-hf ...  -> llm_tf.commands.import_hf.main
    llm-tf export-hf ...  -> llm_tf.commands.export_hf.main
    llm-tf translate ...  -> llm_tf.commands.translate.main
    llm-tf finetune  ...  -> llm_tf.commands.finetune.main

Every subcommand's `main(argv) -> int` returns 0 on success and 2 on bad input,
after printing a one-line error (no traceback); see `llm_tf.commands.common`.
"""

from __future__ import annotations

import importlib
import sys

from llm_tf.commands.common import import_tensorflow, quiet_tensorflow

COMMANDS = {
    "train": ("llm_tf.commands.train", "pre-train a language model (the default command)"),
    "generate": ("llm_tf.commands.generate", "generate text from a run directory or a SavedModel"),
    "export": ("llm_tf.commands.export", "export a run directory as a string-to-string SavedModel"),
    "evaluate": ("llm_tf.commands.evaluate", "score a run on held-out data (one JSON line)"),
    "prepare": ("llm_tf.commands.prepare", "tokenize a corpus once into shards for `train --data`"),
    "import-hf": ("llm_tf.commands.import_hf",
                  "import a GPT-2-family Hugging Face checkpoint as a run directory"),
    "export-hf": ("llm_tf.commands.export_hf",
                  "export a run directory as a Hugging Face GPT-2 checkpoint"),
    "translate": ("llm_tf.commands.translate", "translate sentences with a translation run"),
    "finetune": ("llm_tf.commands.finetune",
                 "adapt a pre-trained run to a task: classify, instruct or lm"),
}

USAGE = "usage: llm-tf {" + ",".join(COMMANDS) + "} [options]   (llm-tf COMMAND --help)\n" + \
    "\n".join(f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items())


def main(argv=None) -> int:
    quiet_tensorflow()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    # With no subcommand (or options only) `llm-tf` trains: the README's main command.
    command = argv.pop(0) if argv and not argv[0].startswith("-") else "train"
    if command not in COMMANDS:
        print(f"llm-tf: error: unknown command {command!r}\n{USAGE}", file=sys.stderr)
        return 2
    # These load TensorFlow with their module; `train` and `prepare` validate first.
    if command not in ("train", "prepare"):
        import_tensorflow()
    module = importlib.import_module(COMMANDS[command][0])
    return module.main(argv)


if __name__ == "__main__":
    sys.exit(main())
