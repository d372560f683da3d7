"""safetensors checkpoints, one tensor at a time: reading a directory, writing a file.

A safetensors file is an 8-byte little-endian header length N, N bytes of JSON
({name: {"dtype", "shape", "data_offsets"}, "__metadata__": {...}}), then the
tensors' raw little-endian bytes back to back. Hugging Face checkpoints hold one
(`model.safetensors`) or several shards named by `model.safetensors.index.json`
({"weight_map": {name: shard file}}).

**Reading** uses the `safetensors` package's NumPy API (`safe_open(path,
framework="np")`): the headers are read at once, so names, shapes and dtypes are
checked before any data is touched, and each tensor is read (copied out of the
memory-mapped file) only when asked for, so an importer that assigns it to a
variable and drops it holds at most one tensor beside the model.

**Writing**: `safetensors.numpy.save_file` takes a dict of every array, which for a
model's variables means a second full copy in memory. `write_safetensors` writes the
same bytes (the header computed from the names and shapes, tensors in the order
`save_file` uses for one dtype: by name) while asking for one array at a time
(tests/test_interop.py checks the bytes equal `save_file`'s; docs/interop.md has the
measured memory of both).
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from safetensors import safe_open

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
# The dtypes read (converted to float32); quantised integer checkpoints are not GPT-2's.
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be read as asked (one line, naming the file)."""


class SafetensorsCheckpoint:
    """The tensors of a checkpoint directory, read lazily.

        tensors = SafetensorsCheckpoint(directory)   # every header read and checked
        tensors.names            # every tensor name, in file order
        tensors.shape(name)      # tuple, from the header
        tensors.read(name)       # float32 NumPy array: this tensor only

    Args:
        directory: holds `model.safetensors`, or `model.safetensors.index.json` and the
            shards it names.

    Raises:
        CheckpointError: no such files, a corrupt or truncated file, an index that names a
            missing shard or a tensor its shard lacks, a tensor in two files, a non-float
            dtype.
    """

    def __init__(self, directory):
        self.directory = Path(directory)
        self._where = {}  # tensor name -> file
        self._shapes = {}  # tensor name -> shape
        for path in self._files():
            self._index(path)

    def _files(self) -> list[Path]:
        single, index = self.directory / SINGLE_FILE, self.directory / INDEX_FILE
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
                files = sorted(set(weight_map.values()))
            except (ValueError, KeyError, TypeError, AttributeError) as error:
                raise CheckpointError(f"{str(index)!r} is not a safetensors index (a JSON "
                                      f"object with a 'weight_map'): {error}") from None
            self._weight_map = weight_map
            return [self.directory / name for name in files]
        if single.is_file():
            self._weight_map = None
            return [single]
        raise CheckpointError(
            f"{str(self.directory)!r} holds no {SINGLE_FILE} (nor {INDEX_FILE} and its "
            "shards); only safetensors weights are read (convert a pytorch_model.bin first).")

    def _index(self, path: Path) -> None:
        """Reads `path`'s header: its names, shapes and dtypes, checked."""
        if not path.is_file():
            raise CheckpointError(f"{str(path)!r} is named by {INDEX_FILE} but does not exist.")
        try:
            with safe_open(str(path), framework="np") as handle:
                slices = {name: handle.get_slice(name) for name in handle.keys()}
                headers = {name: (tuple(s.get_shape()), s.get_dtype())
                           for name, s in slices.items()}
        except Exception as error:  # safetensors raises SafetensorError, an Exception
            raise CheckpointError(f"{str(path)!r} is not a readable safetensors file "
                                  f"({type(error).__name__}: {error}).") from None
        for name, (shape, dtype) in headers.items():
            if name in self._where:
                raise CheckpointError(f"tensor {name!r} is in both {str(self._where[name])!r} "
                                      f"and {str(path)!r}.")
            if dtype not in FLOAT_DTYPES:
                raise CheckpointError(f"{str(path)!r}: tensor {name!r} has dtype {dtype}; only "
                                      f"{', '.join(FLOAT_DTYPES)} are read.")
            if self._weight_map is not None and self._weight_map.get(name) != path.name:
                raise CheckpointError(f"{str(path)!r} holds {name!r}, which {INDEX_FILE} puts "
                                      f"in {self._weight_map.get(name)!r}.")
            self._where[name], self._shapes[name] = path, shape
        if self._weight_map is not None:
            absent = [n for n, f in self._weight_map.items()
                      if f == path.name and n not in headers]
            if absent:
                raise CheckpointError(f"{INDEX_FILE} puts {absent[0]!r} in {str(path)!r}, "
                                      "which does not hold it.")

    @property
    def names(self) -> list[str]:
        return list(self._where)

    def shape(self, name: str) -> tuple:
        return self._shapes[name]

    def read(self, name: str) -> np.ndarray:
        """The tensor `name` as float32 (exact for F32/F16/BF16 data).

        The file is opened for this tensor alone: safetensors memory-maps it, and pages
        of a mapping that stayed open would count in the process's resident memory until
        the end (docs/interop.md measured +475 MB for GPT-2 small)."""
        try:
            with safe_open(str(self._where[name]), framework="np") as handle:
                return handle.get_tensor(name).astype(np.float32, copy=False)
        except Exception as error:
            raise CheckpointError(f"{str(self._where[name])!r}: cannot read {name!r} "
                                  f"({type(error).__name__}: {error}).") from None


def write_safetensors(path, shapes: dict[str, Sequence[int]], array: Callable[[str], np.ndarray],
                      metadata: dict[str, str] | None = None) -> Path:
    """Writes float32 tensors to a safetensors file, asking `array(name)` for one at a time.

    Args:
        path: the file to write (replaced whole: written to a temporary name, then renamed).
        shapes: {name: shape} of every tensor.
        array: name -> float32 array of that shape (C order).
        metadata: the header's "__metadata__" ({str: str}).

    Returns:
        `path` as a `Path`.
    """
    path = Path(path)
    names = sorted(shapes)
    header, offset = {}, 0
    if metadata:
        header["__metadata__"] = dict(metadata)
    for name in names:
        size = 4 * math.prod(shapes[name])
        header[name] = {"dtype": "F32", "shape": list(shapes[name]),
                        "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)  # the data starts 8-byte aligned
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for name in names:
            data = np.ascontiguousarray(array(name), dtype="<f4")
            if data.shape != tuple(shapes[name]):
                raise ValueError(f"tensor {name!r} has shape {data.shape}, its header says "
                                 f"{tuple(shapes[name])}.")
            f.write(memoryview(data).cast("B"))
    os.replace(temporary, path)
    return path
