"""`llm-tf`: one command with subcommands, each implemented next to what it drives.

    llm-tf train     ...  -> llm_tf.training.cli.main
    llm-tf generate  ...  -> llm_tf.generation.cli.main
    llm-tf export    ...  -> llm_tf.export.main

Every subcommand's `main(argv) -> int` returns 0 on success and 2 on bad input,
after printing a one-line error (no traceback): the `UsageError` convention.
"""

from __future__ import annotations

import importlib
import os
import sys

COMMANDS = {
    "train": ("llm_tf.training.cli", "pre-train a language model (the default command)"),
    "generate": ("llm_tf.generation.cli", "generate text from a run directory or a SavedModel"),
    "export": ("llm_tf.export", "export a run directory as a string-to-string SavedModel"),
}

USAGE = "usage: llm-tf {" + ",".join(COMMANDS) + "} [options]   (llm-tf COMMAND --help)\n" + \
    "\n".join(f"  {name:<9} {help_}" for name, (_, help_) in COMMANDS.items())


class UsageError(ValueError):
    """Bad command-line input: printed as one line, exit code 2."""


def run_main(body, argv) -> int:
    """Runs `body(argv)`, turning bad input into one line on stderr and exit code 2."""
    try:
        return body(argv) or 0
    except (UsageError, ValueError, FileNotFoundError, NotADirectoryError, PermissionError) as e:
        print(f"llm-tf: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("llm-tf: interrupted", file=sys.stderr)
        return 130


def quiet_tensorflow() -> None:
    """Hides TensorFlow's C++ log lines (CUDA probes, oneDNN notices) unless the user set
    TF_CPP_MIN_LOG_LEVEL: on a CPU they are noise between the command's own lines. Errors
    still arrive as Python exceptions. Must run before TensorFlow is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


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
    module = importlib.import_module(COMMANDS[command][0])
    return module.main(argv)


if __name__ == "__main__":
    sys.exit(main())
