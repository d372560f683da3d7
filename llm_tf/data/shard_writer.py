"""Writing a prepared directory (the format is in `llm_tf.data.prepared`): `llm-tf prepare`.

The corpus is tokenized once, in parallel (`Dataset.map` over line batches) and in bounded
memory (ids are appended to the current shard as they come), into pieces of a size chosen
from an estimate of the total; at the end the one piece that holds the train/validation
split point is cut in two, in blocks, so nothing is tokenized twice. The manifest is
written last: a directory without one is an interrupted prepare (`remove_partial`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from typing import Optional

import numpy as np
import tensorflow as tf

from llm_tf.data.corpus import Corpus, DataError
from llm_tf.data.prepared import (
    AUTOTUNE,
    MANIFEST_FILE,
    TOKENIZER_DIR,
    Manifest,
    Shard,
    copy_tree,
    is_prepared,
    join_path,
    tokenizer_fingerprint,
)

DEFAULT_SHARDS = 16
MIN_PIECE_TOKENS = 1024          # shards smaller than this are not worth a file
DEFAULT_PIECE_TOKENS = 1 << 24   # shard size when the corpus's size is unknown (TFDS)
_COPY_BLOCK = 1 << 24            # bytes per read when a piece is cut in two


# --- writing ----------------------------------------------------------------------------------

class _ShardWriter:
    """Writes consecutive pieces of the token stream, each `piece_tokens` long (the last
    shorter), hashing as it goes."""

    def __init__(self, directory, dtype, piece_tokens):
        self.directory, self.dtype, self.piece_tokens = directory, dtype, piece_tokens
        self.pieces: list[Shard] = []
        self._file = None

    def _open(self):
        name = f"piece-{len(self.pieces):05d}.bin.tmp"
        self._file = tf.io.gfile.GFile(join_path(self.directory, name), "wb")
        self._hash, self._count, self._name = hashlib.sha256(), 0, name

    def _close(self):
        self._file.close()
        self.pieces.append(Shard(self._name, self._count, self._hash.hexdigest()))
        self._file = None

    def write(self, ids: np.ndarray) -> None:
        ids = ids.astype(self.dtype, copy=False)
        while ids.size:
            if self._file is None:
                self._open()
            take = min(ids.size, self.piece_tokens - self._count)
            data = ids[:take].tobytes()
            self._file.write(data)
            self._hash.update(data)
            self._count += take
            ids = ids[take:]
            if self._count == self.piece_tokens:
                self._close()

    def finish(self) -> list[Shard]:
        if self._file is not None:
            self._close()
        return self.pieces


def _estimate_tokens(corpus: Corpus, tokenizer, sample_batches: int = 4) -> Optional[float]:
    """Tokens in the corpus, from the tokens per byte of its first few line batches; None
    when the corpus's size is unknown (TFDS)."""
    if getattr(corpus, "files", None):
        total_bytes = sum(tf.io.gfile.stat(f).length for f in corpus.files)
    elif isinstance(getattr(corpus, "text", None), str):
        total_bytes = len(corpus.text.encode("utf-8"))
    else:
        return None
    sample_bytes = sample_tokens = 0
    for batch in corpus.line_batches().take(sample_batches):
        sample_bytes += int(tf.reduce_sum(tf.strings.length(batch)))
        sample_tokens += int(tf.size(tokenizer.encode(batch).flat_values))
    return sample_tokens / max(sample_bytes, 1) * total_bytes


def prepare(corpus: Corpus, tokenizer, out_dir: str, *, val_fraction: float = 0.1,
            shards: int = DEFAULT_SHARDS, workers: Optional[int] = None,
            lines_per_batch: int = 4096, progress=None) -> Manifest:
    """Tokenizes `corpus` once into a prepared directory `out_dir` (see the module docstring).

    Args:
        corpus: the text (`llm_tf.data.load_corpus`).
        tokenizer: an `llm_tf.tokenizers.Tokenizer` (learned, or a run's).
        out_dir: a new or empty directory, local or any `tf.io.gfile` filesystem.
        val_fraction: the share of the token stream (at its end) held out for validation.
        shards: about this many training shards (their size is fixed from an estimate of
            the token count made on the first lines; at least one).
        workers: tokenizer calls running in parallel (tf.data `num_parallel_calls`);
            default: as many as tf.data's autotuner picks.
        lines_per_batch: lines per tokenizer call (memory is bounded by a few of these).
        progress: optional callable(tokens_so_far, seconds) called every few seconds.

    Returns:
        the `Manifest`, also written to `out_dir/manifest.json` (last, so that a
        directory with a manifest is complete).
    """
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"`val_fraction` must be in (0, 1). Received: {val_fraction!r}")
    if not isinstance(shards, int) or shards < 1:
        raise DataError(f"`shards` must be a positive integer. Received: shards={shards!r}")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise DataError(f"`workers` must be a positive integer. Received: workers={workers!r}")
    check_out_dir(out_dir)
    started = time.perf_counter()
    corpus.validate()
    tf.io.gfile.makedirs(out_dir)
    dtype = "uint16" if tokenizer.vocab_size <= 1 << 16 else "uint32"
    estimate = _estimate_tokens(corpus, tokenizer)
    piece_tokens = DEFAULT_PIECE_TOKENS if estimate is None else \
        max(MIN_PIECE_TOKENS, int(estimate * (1 - val_fraction) / shards) + 1)
    writer = _ShardWriter(out_dir, dtype, piece_tokens)

    batches = corpus.line_batches(lines_per_batch)
    chunks = batches.map(lambda batch: tokenizer.encode(batch).flat_values,  # (n,) int32
                         num_parallel_calls=workers or AUTOTUNE, deterministic=True)
    last_report = time.perf_counter()
    total = 0
    for chunk in chunks.prefetch(2).as_numpy_iterator():
        writer.write(chunk)
        total += chunk.size
        if progress and time.perf_counter() - last_report > 5:
            progress(total, time.perf_counter() - started)
            last_report = time.perf_counter()
    pieces = writer.finish()
    n_train = int(total * (1 - val_fraction))  # nanoGPT: int(n * 0.9)
    if n_train < 2 or total - n_train < 2:
        for piece in pieces:
            tf.io.gfile.remove(join_path(out_dir, piece.file))
        raise DataError(f"The corpus {corpus.source!r} has {total} tokens: too few to split "
                        f"into training and validation (val_fraction={val_fraction}).")
    train, val = _split_pieces(out_dir, pieces, n_train, dtype)

    tokenizer_dir = join_path(out_dir, TOKENIZER_DIR)
    with tempfile.TemporaryDirectory() as local:
        tokenizer.save(local)
        copy_tree(local, tokenizer_dir)
    manifest = Manifest(dtype=dtype, tokenizer={"kind": tokenizer.kind,
                                                "vocab_size": tokenizer.vocab_size,
                                                "fingerprint": tokenizer_fingerprint(tokenizer)},
                        source=corpus.source, val_fraction=val_fraction, train=tuple(train),
                        val=tuple(val), seconds=time.perf_counter() - started)
    with tf.io.gfile.GFile(join_path(out_dir, MANIFEST_FILE + ".tmp"), "w") as f:
        f.write(json.dumps(manifest.to_dict(), indent=1) + "\n")
    tf.io.gfile.rename(join_path(out_dir, MANIFEST_FILE + ".tmp"),
                       join_path(out_dir, MANIFEST_FILE), overwrite=True)
    return manifest


def check_out_dir(out_dir: str) -> None:
    """A `DataError` unless `out_dir` is new or an empty directory (what `prepare` writes)."""
    if not tf.io.gfile.exists(out_dir):
        return
    if not tf.io.gfile.isdir(out_dir):
        raise DataError(f"The output directory {out_dir!r} is a file: choose a new directory.")
    if tf.io.gfile.listdir(out_dir):
        raise DataError(f"The output directory {out_dir!r} is not empty: choose a new one.")


def _split_pieces(out_dir, pieces, n_train, dtype):
    """Renames the pieces into train-*/val-* shards, cutting the one that holds token
    `n_train` in two (the only bytes written twice)."""
    train, val, seen = [], [], 0
    itemsize = np.dtype(dtype).itemsize
    for piece in pieces:
        path = join_path(out_dir, piece.file)
        start, end = seen, seen + piece.tokens
        seen = end
        if end <= n_train:
            train.append(_rename(out_dir, path, f"train-{len(train):05d}.bin", piece))
        elif start >= n_train:
            val.append(_rename(out_dir, path, f"val-{len(val):05d}.bin", piece))
        else:  # copied in blocks: memory stays bounded whatever the shard size
            cut = (n_train - start) * itemsize
            with tf.io.gfile.GFile(path, "rb") as source:
                for size, name, into in ((cut, f"train-{len(train):05d}.bin", train),
                                         (None, f"val-{len(val):05d}.bin", val)):
                    digest, written = hashlib.sha256(), 0
                    with tf.io.gfile.GFile(join_path(out_dir, name), "wb") as f:
                        while size is None or written < size:
                            block = source.read(_COPY_BLOCK if size is None
                                                else min(_COPY_BLOCK, size - written))
                            if not block:
                                break
                            f.write(block)
                            digest.update(block)
                            written += len(block)
                    into.append(Shard(name, written // itemsize, digest.hexdigest()))
            tf.io.gfile.remove(path)
    return train, val


def _rename(out_dir, path, name, piece):
    tf.io.gfile.rename(path, join_path(out_dir, name), overwrite=True)
    return dataclasses.replace(piece, file=name)


def remove_partial(out_dir: str) -> None:
    """Removes a directory left by an interrupted `prepare` (no manifest); local only."""
    if "://" not in out_dir and os.path.isdir(out_dir) and not is_prepared(out_dir):
        shutil.rmtree(out_dir, ignore_errors=True)
