"""`llm-tf`: one command with subcommands, each implemented next to what it drives.

    llm-tf train     ...  -> llm_tf.training.cli.main
    llm-tf generate  ...  -> llm_tf.generation.cli.main
    llm-tf export    ...  -> llm_tf.export.main

Every subcommand's `main(argv) -> int` returns 0 on success and 2 on bad input,
after printing a one-line error (no traceback): the `UsageError` convention.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import threading

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


# What TensorFlow 2.21's shared libraries print while they load (twice: two libraries). It is
# written before absl logging is initialised, so TF_CPP_MIN_LOG_LEVEL does not hide it.
LOAD_TIME_NOTICES = ("All log messages before absl::InitializeLog() is called",
                     "] oneDNN custom operations are on.",
                     "] Could not find cuda drivers on your machine")
_quiet = False


def quiet_tensorflow() -> None:
    """Hides TensorFlow's C++ log lines unless the user set TF_CPP_MIN_LOG_LEVEL: on a CPU they
    are noise between the command's own lines, and errors still arrive as Python exceptions.
    Must run before TensorFlow is imported; `import_tensorflow` then removes the load-time
    notices that the level cannot reach."""
    global _quiet
    _quiet = _quiet or "TF_CPP_MIN_LOG_LEVEL" not in os.environ  # a second call keeps it
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def import_tensorflow():
    """Imports TensorFlow; after `quiet_tensorflow`, without its `LOAD_TIME_NOTICES` on stderr."""
    if not _quiet or "tensorflow" in sys.modules:
        import tensorflow
        return tensorflow
    with stderr_without(LOAD_TIME_NOTICES):
        import tensorflow
    return tensorflow


@contextlib.contextmanager
def stderr_without(fragments):
    """Within the block, lines written to file descriptor 2 that contain one of `fragments`
    are dropped; every other line reaches the real stderr as it arrives.

    C++ libraries write to the descriptor, not to `sys.stderr`, so the descriptor becomes a
    pipe that a thread reads. Forwarding at once (not after the block) means nothing is held
    back, even if the block crashes the process.
    """
    fragments = [f.encode() for f in fragments]
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    real_stderr = os.dup(2)

    def forward():
        with os.fdopen(read_end, "rb") as pipe:
            for line in pipe:
                if not any(fragment in line for fragment in fragments):
                    os.write(real_stderr, line)

    forwarder = threading.Thread(target=forward, daemon=True)
    forwarder.start()
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(real_stderr, 2)  # closes the pipe's last writer: the forwarder reads to its end
        forwarder.join(timeout=5)
        os.close(real_stderr)


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
    if command != "train":  # these load TensorFlow with their module; `train` validates first
        import_tensorflow()
    module = importlib.import_module(COMMANDS[command][0])
    return module.main(argv)


if __name__ == "__main__":
    sys.exit(main())
