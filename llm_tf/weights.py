"""Weights files (`*.weights.h5`): the suffix rule, the stamped config, the fit check, old layouts.

Keras 3 writes a model's variables into HDF5 groups named by the path of
attributes that leads to each layer (`decoder/blocks/decoder_layer_1/...`).
Plain Keras loads a file saved from another configuration partly and quietly
(1 block of a 2-block file, say), so a model that mixes in `StampedWeights`
writes its architecture into the file as an HDF5 attribute, and loading into
another architecture names the field that differs instead.

The design document saves `encoder_weights.h5`; Keras 3 insists on the
`.weights.h5` suffix for weights-only files, and `check_path` says so.

**Old layouts.** When a model's attribute layout changes, files written before
still load: the class lists, in `legacy_weight_groups`, which top-level groups
of an old file moved where, and `load_weights` reads such a file through a
renamed copy. (`TransformerLM` files written before its layers moved under
`decoder/` are one case; tests/data/legacy_tiny_run holds one.)
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

from llm_tf.config import differences, format_differences

SUFFIX = ".weights.h5"
# The architecture, written into the weights file as an HDF5 attribute.
CONFIG_ATTRIBUTE = "llm_tf_model_config"


def check_path(path) -> str:
    """`path` as a string if it ends in `.weights.h5`, else a `ValueError` explaining why."""
    path = os.fspath(path)
    if not path.endswith(SUFFIX):
        suggestion = (path[:-3] if path.endswith(".h5") else path) + SUFFIX
        raise ValueError(
            f"Weights files must end in '{SUFFIX}' (Keras 3). Received: {path!r}. "
            f"The design document's './encoder_weights.h5' becomes "
            f"'./encoder.weights.h5'; here, use {suggestion!r}.")
    return path


def check_file(path) -> str:
    """`check_path`, and a `FileNotFoundError` naming the file if it is missing."""
    path = check_path(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Weights file {path!r} does not exist.")
    return path


def save(model, path) -> str:
    """`model.save_weights(path)` written to a temporary file, then renamed, so a crash
    mid-write never leaves a truncated weights file in place. Returns `path`."""
    path = check_path(path)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    temporary = path[: -len(SUFFIX)] + ".tmp" + SUFFIX
    model.save_weights(temporary)
    os.replace(temporary, path)
    return path


def read_stamp(path) -> dict | None:
    """The architecture stamped into the file at `path`, or None for an unstamped file."""
    import h5py

    with h5py.File(path, "r") as f:
        stamped = f.attrs.get(CONFIG_ATTRIBUTE)
    if stamped is None:
        return None
    try:
        return json.loads(stamped)
    except ValueError as error:
        raise ValueError(f"{path!r} holds an unreadable model config: {error}") from None


def _file_shapes(path) -> list:
    import h5py

    shapes = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, item: shapes.append(tuple(item.shape))
                     if isinstance(item, h5py.Dataset) else None)
    return shapes


def check_shapes(model, path) -> None:
    """For unstamped files: a `ValueError` if the file's weight shapes are not the model's."""
    shapes = sorted(_file_shapes(path))
    expected = sorted(tuple(v.shape) for v in model.weights)
    if shapes != expected:
        missing = sorted(set(expected) - set(shapes))
        extra = sorted(set(shapes) - set(expected))
        raise ValueError(
            f"The weights in {path!r} do not fit this model: the file holds {len(shapes)} "
            f"arrays, the model {len(expected)}; shapes only in the model: "
            f"{missing or 'none'}; only in the file: {extra or 'none'}.")


class StampedWeights:
    """Mixin for a `keras.Model` whose architecture is a config object.

    The model defines `weights_config()` -> the config (an `llm_tf.config` dataclass, or
    None for a model that no config describes: its files are unstamped and checked by
    shapes) and, if its layout ever changed, `legacy_weight_groups` {old group: new group}.
    `save_weights` stamps the config into the file; `load_weights` checks it (naming
    the fields that differ, `ignored_weights_fields` aside) and reads old layouts.
    """

    legacy_weight_groups: dict = {}
    # Fields that change no weight, and may differ between training and inference.
    ignored_weights_fields: tuple = ("dropout",)

    def weights_config(self):
        raise NotImplementedError

    def save_weights(self, filepath, overwrite=True, **kwargs):
        import h5py

        filepath = check_path(filepath)
        self.build()
        super().save_weights(filepath, overwrite=overwrite, **kwargs)
        config = self.weights_config()
        if config is not None:
            with h5py.File(filepath, "a") as f:
                f.attrs[CONFIG_ATTRIBUTE] = config.to_json()

    def load_weights(self, filepath, skip_mismatch=False, **kwargs):
        filepath = check_file(filepath)
        self.build()
        if not skip_mismatch:
            self.check_weights_file(filepath)
        with current_layout(filepath, self.legacy_weight_groups) as readable:
            super().load_weights(readable, skip_mismatch=skip_mismatch, **kwargs)

    def check_weights_file(self, filepath) -> None:
        """A `ValueError` naming what differs if `filepath` holds another architecture."""
        stamped = read_stamp(filepath)
        mine = self.weights_config()
        if stamped is None or mine is None:
            check_shapes(self, filepath)
            return
        try:
            saved = type(mine).from_dict(stamped)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{filepath!r} holds an unreadable model config: {error}") from None
        found = differences(mine, saved, ignore=self.ignored_weights_fields)
        if found:
            raise ValueError(
                f"The weights in {filepath!r} belong to another model configuration: "
                + format_differences(found) + " (expected = the model being loaded into, "
                "found = the model that saved the file).")


@contextlib.contextmanager
def current_layout(path, renames: dict):
    """Yields `path` itself, or a temporary copy of it with old top-level groups renamed
    (`renames`: {old name: new name}) when the file has the old layout."""
    import h5py

    with h5py.File(path, "r") as f:
        old = [name for name in renames if name in f and renames[name] not in f]
        if not old:
            copy = None
        else:
            handle, copy = tempfile.mkstemp(suffix=SUFFIX)
            os.close(handle)
            with h5py.File(copy, "w") as out:
                out.attrs.update(f.attrs)
                for name in f:
                    f.copy(f[name], out, name=renames.get(name, name))
    try:
        yield path if copy is None else copy
    finally:
        if copy is not None:
            os.remove(copy)
