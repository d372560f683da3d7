"""What every `llm-tf` command shares: the bad-input convention and a quiet TensorFlow.

Every command's `main(argv) -> int` returns 0 on success and 2 on bad input,
after printing a one-line error (no traceback): `run_main` does it. This module
imports nothing of llm_tf, so every command, and the dispatcher, can use it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading


class UsageError(ValueError):
    """Bad command-line input: printed as one line, exit code 2."""


class OneLineParser(argparse.ArgumentParser):
    """An `ArgumentParser` whose errors are `UsageError`s (one line), not a usage block."""

    def error(self, message):
        raise UsageError(message)


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
    except Exception as e:
        if not is_filesystem_error(e):
            raise
        # TensorFlow's messages may span lines ("...\n when reading metadata of gs://b/x");
        # joined, the path the user gave stays in the one line.
        print("llm-tf: error: " + " ".join(line.strip() for line in e.message.splitlines()
                                           if line.strip()), file=sys.stderr)
        return 2


def is_filesystem_error(error: BaseException) -> bool:
    """Whether `error` is TensorFlow's report of a path the user gave (missing, forbidden, on
    an unknown or unreachable filesystem): bad input, not a bug.

    TensorFlow is looked up, not imported: a command that never loaded it raised none of its
    errors. The same error classes also come from bugs, which keep their traceback: a
    resource freed too early (NotFound "Resource localhost/..."), an op without a kernel,
    an uninitialized variable, a lost worker (Unimplemented, FailedPrecondition,
    Unavailable); of these three only the ones about a `scheme://` path are the user's.
    """
    tf = sys.modules.get("tensorflow")
    errors = getattr(tf, "errors", None)
    if errors is None or not isinstance(error, errors.OpError):
        return False
    message = error.message or ""
    if isinstance(error, (errors.NotFoundError, errors.PermissionDeniedError)):
        return not any(fragment in message for fragment in _RESOURCE_LOOKUPS)
    return isinstance(error, (errors.UnimplementedError, errors.FailedPreconditionError,
                              errors.UnavailableError)) and "://" in message


# How TensorFlow names a missing resource (a variable, a lookup table, a tokenizer model) of
# this process: a NotFoundError that is a bug, not a path.
_RESOURCE_LOOKUPS = ("Resource localhost/", "Container localhost", "from Container: localhost")


def check_tokenizer_from(directory: str) -> None:
    """A `UsageError` unless the run or prepared `directory` (`--tokenizer-from`) holds a
    saved tokenizer (`tokenizer/tokenizer.json`). A local path is checked without TensorFlow;
    a remote one (`gs://...`) only through `tf.io.gfile`, so TensorFlow is loaded for it."""
    if "://" in directory:
        path = directory.rstrip("/") + "/tokenizer/tokenizer.json"
        exists = import_tensorflow().io.gfile.exists
    else:
        path, exists = os.path.join(directory, "tokenizer", "tokenizer.json"), os.path.isfile
    if not exists(path):
        raise UsageError(f"--tokenizer-from {directory!r} holds no tokenizer/ "
                         "(give a run directory or a prepared directory).")


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
