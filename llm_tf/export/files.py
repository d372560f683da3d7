"""Writing and reading SavedModel directories, whatever the exported module does.

Every llm_tf export is a `tf.Module` saved with its serving signatures and a few
text assets (a README for whoever finds the directory, the model's config). The
rules are the same for all of them, so they live here once:

* a non-empty output directory that is not a SavedModel is never overwritten;
* the export is written next to its destination and then moved into place, so a
  crash never leaves half an export, and an existing export is replaced whole;
* a directory that is not an llm_tf export is refused with a message that says so.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import tensorflow as tf

from llm_tf.staging import staged_directory

README_ASSET = "README.txt"
CONFIG_ASSET = "model_config.json"


def check_out_dir(out_dir) -> Path:
    """`out_dir` as a `Path`, or a `ValueError` if it exists and is not a SavedModel."""
    if "://" in os.fspath(out_dir):
        # `Path` would fold "gs://b/x" into the local folder "gs:/b/x" and the export would
        # land there without a word: it is staged and moved with local file functions.
        raise ValueError(f"The export directory must be a local path, not "
                         f"{os.fspath(out_dir)!r}: export to a local directory and copy it "
                         "(e.g. `gsutil -m cp -r DIR gs://...`).")
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or (
            any(out_dir.iterdir()) and not (out_dir / "saved_model.pb").is_file())):
        raise ValueError(f"{str(out_dir)!r} exists and is not a SavedModel: choose another "
                         "output directory (an existing export there would be replaced).")
    return out_dir


def write_saved_model(module: tf.Module, out_dir, signatures: dict, assets: dict) -> Path:
    """Saves `module` with `signatures` and text `assets` ({file name: text}) to `out_dir`.

    The assets are attached to the module as `tf.saved_model.Asset`s named by the file's
    stem ("README.txt" -> `loaded.readme.asset_path`); they land in `OUT_DIR/assets/`.
    Returns `out_dir` as a `Path`.
    """
    out_dir = check_out_dir(out_dir)
    with staged_directory(out_dir) as staging, tempfile.TemporaryDirectory() as folder:
        for name, text in assets.items():
            path = Path(folder) / name
            path.write_text(text, encoding="utf-8")
            setattr(module, path.stem.lower(), tf.saved_model.Asset(str(path)))
        tf.saved_model.save(module, str(staging), signatures=signatures)
    return out_dir


def load_saved_model(path, function: str = "generate"):
    """`tf.saved_model.load` with clear errors for a directory that is not an llm_tf export
    offering `function` ("generate" for a language model's export)."""
    # A string, checked through tf.io.gfile: `Path` would turn "gs://b/x" into "gs:/b/x".
    path = os.fspath(path)
    if not tf.io.gfile.isdir(path):
        raise FileNotFoundError(f"SavedModel directory {path!r} does not exist.")
    if not tf.saved_model.contains_saved_model(path):
        raise ValueError(f"{path!r} is not a SavedModel directory (no saved_model.pb); "
                         "write one with `llm-tf export RUN_DIR OUT_DIR`.")
    # Registers the TF-Text ops (SentencePiece, WordPiece, GPT-2's regex) that the tokenizer
    # of an export may use: loading a graph with an unregistered op fails. A process that
    # trained first has them already; `llm-tf generate --saved-model` in a new one does not.
    import tensorflow_text  # noqa: F401
    loaded = tf.saved_model.load(path)
    if not hasattr(loaded, function):
        raise ValueError(f"The SavedModel in {path!r} has no `{function}` function: it was "
                         f"not written by `llm-tf export` for this kind of run.")
    return loaded
