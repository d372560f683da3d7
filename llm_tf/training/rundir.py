"""Checks on the run directory before any work: exists? resumable? writable? same model?

    new run       RUN_DIR must be absent or empty — or hold an llm_tf run and
                  `overwrite=True`, which removes that run's files (only those).
    resume        RUN_DIR must hold config.json and a checkpoint, and the model
                  configuration asked for must equal the saved one (the error
                  names every field that differs).

Errors are `RunDirectoryError` (a `ValueError`): `llm-tf train` prints them as
one line and exits with code 2.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from llm_tf import saving
METRICS_FILE = "metrics.jsonl"      # written by reporting.Reporter
TENSORBOARD_DIR = "tensorboard"

# What a training run writes; `overwrite` removes these and nothing else.
RUN_ENTRIES = (saving.CONFIG_FILE, saving.TOKENIZER_DIR, saving.WEIGHTS_FILE,
               saving.CHECKPOINT_DIR, METRICS_FILE, saving.SAVED_MODEL_DIR, TENSORBOARD_DIR)


class RunDirectoryError(ValueError):
    """The run directory cannot be used as asked."""


def checkpoint_dir(run_dir) -> str:
    return os.path.join(os.fspath(run_dir), saving.CHECKPOINT_DIR)


def has_checkpoint(run_dir) -> bool:
    """Whether RUN_DIR/checkpoints has an index naming a checkpoint whose files exist.

    Read without TensorFlow (the `checkpoint` file is a text proto), so that
    `llm-tf train --resume` rejects a bad directory before TensorFlow loads.
    """
    directory = checkpoint_dir(run_dir)
    try:
        with open(os.path.join(directory, "checkpoint"), encoding="utf-8") as f:
            first = f.readline()
    except OSError:
        return False
    name = first.partition(":")[2].strip().strip('"')
    path = name if os.path.isabs(name) else os.path.join(directory, name)
    return bool(name) and os.path.isfile(path + ".index")


def check_writable(run_dir) -> None:
    """Creates RUN_DIR if needed and writes a probe file, or raises `RunDirectoryError`."""
    run_dir = Path(run_dir)
    probe = run_dir / f".write-test-{uuid.uuid4().hex}"
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise RunDirectoryError(f"the run directory {str(run_dir)!r} is not writable "
                                f"({reason}); choose another with --run-dir.") from None


def prepare_new(run_dir, overwrite: bool = False) -> None:
    """Makes RUN_DIR ready for a new run (see the module docstring)."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirectoryError(f"the run directory {str(run_dir)!r} is a file.")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        is_run = (run_dir / saving.CONFIG_FILE).is_file()
        if not overwrite:
            what = "holds a run" if is_run else "is not empty"
            raise RunDirectoryError(
                f"the run directory {str(run_dir)!r} {what}: pass --resume to continue it, "
                "--overwrite to start again, or choose another --run-dir.")
        if not is_run:
            raise RunDirectoryError(
                f"refusing to --overwrite {str(run_dir)!r}: it is not empty and holds no "
                f"llm_tf run ({saving.CONFIG_FILE} is missing); choose another --run-dir.")
        for name in RUN_ENTRIES:
            path = run_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    check_writable(run_dir)


def differences(saved, asked) -> list[tuple[str, str]]:
    """[(field, 'saved X, asked for Y')] for every field of two configs that differs."""
    old, new = saved.to_dict(), asked.to_dict()
    return [(k, f"saved {old[k]!r}, asked for {new.get(k)!r}") for k in old
            if old[k] != new.get(k)]


def model_difference(saved, asked) -> str:
    """'field: saved X, asked for Y; ...' for every field that differs."""
    return "; ".join(f"{name}: {change}" for name, change in differences(saved, asked))


def prepare_resume(run_dir, model_config=None) -> saving.RunConfig:
    """Returns the saved configs of a resumable RUN_DIR; checks the model config if given."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        raise RunDirectoryError(f"--resume: the run directory {str(run_dir)!r} is empty or "
                                "does not exist; there is nothing to resume.")
    try:
        saved = saving.read_config(run_dir)
    except (FileNotFoundError, ValueError) as error:
        raise RunDirectoryError(f"--resume: {error}") from None
    if not has_checkpoint(run_dir):
        raise RunDirectoryError(f"--resume: {str(run_dir)!r} has no checkpoint yet "
                                f"({checkpoint_dir(run_dir)!r} is empty); start it again "
                                "with --overwrite.")
    if model_config is not None and model_config != saved.model:
        raise RunDirectoryError(
            f"--resume: the model asked for differs from the one saved in {str(run_dir)!r}: "
            + model_difference(saved.model, model_config))
    check_writable(run_dir)
    return saved
