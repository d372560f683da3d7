"""A corpus tokenized once into shards: the directory's format, and reading it for `llm-tf train`.

Writing one (`prepare`, run by `llm-tf prepare`) is in `llm_tf.data.shard_writer`.

nanoGPT's `prepare.py` writes `train.bin`/`val.bin` once and training reads token ids,
never text; BERT and Model Garden pre-train from many shards read in parallel. A
*prepared directory* is that, for any filesystem `tf.io.gfile` knows (local, `gs://`,
`ram://`):

    DIR/
      manifest.json                      what is here (below); written last
      tokenizer/                         the tokenizer's files (`Tokenizer.save`)
      train-00000.bin ... train-0000N.bin   the training split, in corpus order
      val-00000.bin ...                     the validation split, in corpus order

A shard is a raw little-endian array of token ids (`uint16` when the vocabulary fits,
else `uint32`): no framing, so `tf.data.FixedLengthRecordDataset` reads it in fixed
records at disk speed and `numpy.fromfile` reads it too. Measured against TFRecord
(docs/benchmarks.md): a TFRecord of the same ids is ~25% larger and needs a parse per
record; raw arrays need neither, and their size says how many tokens they hold, so a
truncated shard is caught when the directory is opened.

`manifest.json`: format and version, the token dtype, the tokenizer (kind, vocabulary
size, fingerprint = SHA-256 of its saved files), the source, `val_fraction`, the token
counts of each split, and per shard its file name, token count and SHA-256.

The split is nanoGPT's and `build_lm_data`'s: the last `val_fraction` of the token
stream is validation. Prepare writes the stream once, into pieces of a size chosen from
an estimate of the total, and at the end cuts the one piece that holds the split point
in two; nothing is tokenized twice.

Reading (`PreparedCorpus.lm_data`): the training shards in an order reshuffled every
epoch (the same order on every worker, then `shard`ed by the `tf.distribute` input
context, so workers read disjoint shards), `cycle_length` shards at a time interleaved
in parallel, each cut into windows of T+1 tokens every T tokens (as the streamed text
path does), a seeded shuffle buffer of windows, batches. With one training shard this
is exactly the streamed path's sequence of batches for the same seed. Windows do not
cross shard boundaries (less than one window per boundary is unused). Evaluation reads
the validation shards only, in order, every token once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tempfile
from typing import Optional

import numpy as np
import tensorflow as tf

from llm_tf.data.corpus import MANIFEST_FILE, DataError
from llm_tf.data.lm import LMData, stride_windows, whole_split_batches
from llm_tf.tokenizers.base import CONFIG_FILE as TOKENIZER_CONFIG_FILE

TOKENIZER_DIR = "tokenizer"
RUN_CONFIG = "config.json"  # what a run directory (`llm_tf.rundir.RunDir`) always holds
FORMAT = "llm_tf.prepared"
VERSION = 1
RECORD_TOKENS = 1 << 16          # tokens per read (128 KiB of uint16)
DEFAULT_CYCLE_LENGTH = 4         # training shards read at the same time
DEFAULT_SHUFFLE_BUFFER = 10_000  # windows
AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass(frozen=True)
class Shard:
    """One file of token ids: its name inside the directory, token count and SHA-256."""

    file: str
    tokens: int
    sha256: str


@dataclasses.dataclass(frozen=True)
class Manifest:
    """The contents of `manifest.json` (see the module docstring)."""

    dtype: str
    tokenizer: dict
    source: str
    val_fraction: float
    train: tuple
    val: tuple
    seconds: float = 0.0

    @property
    def num_train_tokens(self) -> int:
        return sum(s.tokens for s in self.train)

    @property
    def num_val_tokens(self) -> int:
        return sum(s.tokens for s in self.val)

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "dtype": self.dtype,
                "tokenizer": self.tokenizer, "source": self.source,
                "val_fraction": self.val_fraction,
                "num_train_tokens": self.num_train_tokens,
                "num_val_tokens": self.num_val_tokens, "seconds": round(self.seconds, 2),
                "shards": {"train": [dataclasses.asdict(s) for s in self.train],
                           "val": [dataclasses.asdict(s) for s in self.val]}}

    @classmethod
    def from_dict(cls, values: dict, where: str) -> "Manifest":
        try:
            if values.get("format") != FORMAT or values.get("version") != VERSION:
                raise ValueError(f"format {values.get('format')!r} version "
                                 f"{values.get('version')!r}, expected {FORMAT!r} {VERSION}")
            shards = {split: tuple(Shard(str(s["file"]), int(s["tokens"]), str(s["sha256"]))
                                   for s in values["shards"][split])
                      for split in ("train", "val")}
            manifest = cls(dtype=str(values["dtype"]), tokenizer=dict(values["tokenizer"]),
                           source=str(values["source"]),
                           val_fraction=float(values["val_fraction"]), seconds=float(
                               values.get("seconds", 0.0)), **shards)
            if manifest.dtype not in ("uint16", "uint32"):
                raise ValueError(f"dtype {manifest.dtype!r}")
            if not manifest.train or not manifest.val:
                raise ValueError("no training or no validation shard")
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise DataError(f"{where} is not a valid llm_tf manifest ({error}).") from None
        return manifest


# --- the tokenizer's identity ----------------------------------------------------------------

def tokenizer_fingerprint(tokenizer) -> str:
    """SHA-256 of the files `tokenizer.save` writes: equal iff the two tokenizers are one."""
    with tempfile.TemporaryDirectory() as directory:
        tokenizer.save(directory)
        digest = hashlib.sha256()
        for name in sorted(os.listdir(directory)):
            digest.update(name.encode() + b"\0")
            with open(os.path.join(directory, name), "rb") as f:
                digest.update(f.read())
        return digest.hexdigest()


def copy_tree(source: str, destination: str) -> None:
    """Copies a flat directory of files through tf.io.gfile (any filesystem to any)."""
    tf.io.gfile.makedirs(destination)
    for name in tf.io.gfile.listdir(source):
        tf.io.gfile.copy(join_path(source, name), join_path(destination, name), overwrite=True)


def read_tokenizer(directory: str):
    """The tokenizer saved in `directory` (`Tokenizer.save`), on any `tf.io.gfile` filesystem."""
    from llm_tf.tokenizers import load_tokenizer
    if "://" not in directory:
        return load_tokenizer(directory)
    with tempfile.TemporaryDirectory() as local:  # tokenizers read local files only
        copy_tree(directory, local)
        return load_tokenizer(local)


def join_path(directory: str, name: str) -> str:
    return directory.rstrip("/") + "/" + name if "://" in directory else \
        os.path.join(directory, name)


# --- reading ----------------------------------------------------------------------------------

def is_prepared(path: str) -> bool:
    """Whether `path` is a directory holding a `manifest.json` (no further checks)."""
    try:
        return tf.io.gfile.isdir(path) and tf.io.gfile.exists(join_path(path, MANIFEST_FILE))
    except tf.errors.OpError:
        return False


class PreparedCorpus:
    """An opened prepared directory: its manifest, checked against the files on disk.

    `PreparedCorpus(path)` reads `manifest.json` and checks that every shard exists with
    the size its token count implies and that the tokenizer is there (a truncated or
    missing file is a `DataError` naming it); `verify()` also checks the SHA-256 of every
    shard (reads everything).
    """

    def __init__(self, path: str):
        self.path = os.fspath(path)
        manifest_path = join_path(self.path, MANIFEST_FILE)
        if not tf.io.gfile.isdir(self.path):
            raise DataError(f"{self.path!r} is not a directory (a prepared directory is made "
                            "by `llm-tf prepare`).")
        if not tf.io.gfile.exists(manifest_path):
            raise DataError(f"{self.path!r} is not a prepared directory: it has no "
                            f"{MANIFEST_FILE} (make one with `llm-tf prepare --out DIR`).")
        try:
            with tf.io.gfile.GFile(manifest_path, "r") as f:
                values = json.loads(f.read())
        except ValueError as error:
            raise DataError(f"{manifest_path!r} is not valid JSON ({error}).") from None
        self.manifest = Manifest.from_dict(values, repr(manifest_path))
        self.itemsize = np.dtype(self.manifest.dtype).itemsize
        for shard in self.manifest.train + self.manifest.val:
            path = self.shard_path(shard)
            expected = shard.tokens * self.itemsize
            if not tf.io.gfile.exists(path):
                raise DataError(f"The shard {path!r} named in {manifest_path!r} is missing.")
            found = tf.io.gfile.stat(path).length
            if found != expected:
                raise DataError(f"The shard {path!r} has {found} bytes, but the manifest says "
                                f"{shard.tokens} tokens ({expected} bytes): truncated or "
                                "replaced; prepare the directory again.")
        # Read only later (`load_tokenizer`), where its absence is a bare NotFoundError.
        tokenizer = join_path(join_path(self.path, TOKENIZER_DIR), TOKENIZER_CONFIG_FILE)
        if not tf.io.gfile.exists(tokenizer):
            raise DataError(f"The prepared directory {self.path!r} has no tokenizer "
                            f"({tokenizer!r} is missing): prepare it again with "
                            "`llm-tf prepare`.")

    def shard_path(self, shard: Shard) -> str:
        return join_path(self.path, shard.file)

    @property
    def source(self) -> str:
        return self.path

    @property
    def num_train_tokens(self) -> int:
        return self.manifest.num_train_tokens

    @property
    def num_val_tokens(self) -> int:
        return self.manifest.num_val_tokens

    def verify(self) -> None:
        """Checks every shard's SHA-256 against the manifest (reads every byte)."""
        for shard in self.manifest.train + self.manifest.val:
            digest = hashlib.sha256()
            with tf.io.gfile.GFile(self.shard_path(shard), "rb") as f:
                while block := f.read(1 << 24):
                    digest.update(block)
            if digest.hexdigest() != shard.sha256:
                raise DataError(f"The shard {self.shard_path(shard)!r} does not match its "
                                "checksum in the manifest: prepare the directory again.")

    def load_tokenizer(self):
        """The tokenizer the shards were made with."""
        return read_tokenizer(join_path(self.path, TOKENIZER_DIR))

    def check_tokenizer(self, tokenizer, whose: str) -> None:
        """A `DataError` unless `tokenizer` is the one the shards were made with."""
        expected = self.manifest.tokenizer
        if tokenizer_fingerprint(tokenizer) != expected.get("fingerprint"):
            raise DataError(
                f"The prepared directory {self.path!r} was tokenized with another tokenizer "
                f"({expected.get('kind')}, vocabulary {expected.get('vocab_size')}) than "
                f"{whose} ({tokenizer.kind}, vocabulary {tokenizer.vocab_size}): prepare it "
                "again with --tokenizer-from, or train with its own tokenizer.")

    # -- datasets ------------------------------------------------------------------------

    def _shard_chunks(self, path, tokens):
        """One shard as 1-D int32 chunks of up to RECORD_TOKENS ids, in order.

        Whole records, then the tail as one record (FixedLengthRecordDataset refuses a
        file that is not a multiple of its record size, so the tail is read through
        `header_bytes`)."""
        dtype = tf.uint16 if self.manifest.dtype == "uint16" else tf.uint32
        size = self.itemsize
        tokens = tf.cast(tokens, tf.int64)
        full = tokens // RECORD_TOKENS
        tail = tokens - full * RECORD_TOKENS
        records = tf.data.FixedLengthRecordDataset(
            path, RECORD_TOKENS * size, footer_bytes=tail * size).take(full)
        last = tf.data.FixedLengthRecordDataset(
            path, tf.maximum(tail, 1) * size, header_bytes=full * RECORD_TOKENS * size
        ).take(tf.minimum(tail, 1))
        return records.concatenate(last).map(
            lambda record: tf.cast(tf.io.decode_raw(record, dtype, little_endian=True),
                                   tf.int32))

    def split_chunks(self, split: str) -> tf.data.Dataset:
        """The `split` ("train" or "val") token stream as int32 chunks, in corpus order."""
        shards = self.manifest.train if split == "train" else self.manifest.val
        paths = [self.shard_path(s) for s in shards]
        counts = [s.tokens for s in shards]
        files = tf.data.Dataset.from_tensor_slices((paths, tf.constant(counts, tf.int64)))
        return files.flat_map(self._shard_chunks)

    def train_windows(self, context_length: int, seed: int, input_context=None,
                      cycle_length: int = DEFAULT_CYCLE_LENGTH,
                      shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER) -> tf.data.Dataset:
        """One epoch of shuffled `(x, y)` training windows (T,) for one input pipeline;
        `.repeat()` gives the next epochs, each in a new order."""
        shards = self.manifest.train
        pipelines = input_context.num_input_pipelines if input_context else 1
        index = input_context.input_pipeline_id if input_context else 0
        if len(shards) < pipelines:
            raise DataError(f"{self.path!r} has {len(shards)} training shard(s), fewer than "
                            f"the {pipelines} input pipelines (workers) reading it: prepare it "
                            f"with --shards {pipelines} or more.")
        paths = [self.shard_path(s) for s in shards]
        counts = tf.constant([s.tokens for s in shards], tf.int64)
        # The same shard order on every worker (same seed), then each takes its share.
        files = tf.data.Dataset.from_tensor_slices((paths, counts)).shuffle(
            len(shards), seed=seed, reshuffle_each_iteration=True).shard(pipelines, index)
        windows = files.interleave(
            lambda path, n: stride_windows(self._shard_chunks(path, n), context_length),
            cycle_length=min(cycle_length, len(shards)), block_length=1,
            num_parallel_calls=AUTOTUNE if cycle_length > 1 else None, deterministic=True)
        return windows.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)

    def train_batches(self, data_config, *, start_step: int = 0, epochs: Optional[int] = None,
                      input_context=None, cycle_length: int = DEFAULT_CYCLE_LENGTH,
                      shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER) -> tf.data.Dataset:
        """Training batches `(x, y)` int32 for one input pipeline, from batch `start_step`.

        Args:
            data_config: context_length T, batch_size B (global), seed.
            start_step: the dataset starts at this batch of the uninterrupted run (exact
                resume; replayed through the pipeline without the model).
            epochs: passes over the training shards; None repeats forever.
            input_context: a `tf.distribute.InputContext` (from
                `distribute_datasets_from_function`): this pipeline reads its share of the
                shards and makes per-replica batches of B / replicas windows.
        """
        B = data_config.batch_size
        per_replica = input_context.get_per_replica_batch_size(B) if input_context else B
        train = self.train_windows(data_config.context_length, data_config.seed, input_context,
                                   cycle_length, shuffle_buffer).repeat(epochs)
        # Each pipeline's batch k is its share of global batch k: skip its own windows.
        return train.skip(start_step * per_replica).batch(
            per_replica, drop_remainder=True).prefetch(AUTOTUNE)

    def val_batches(self, data_config, pad_id: int = 0) -> tf.data.Dataset:
        """The whole validation split, every token after the first a target once (global
        batches; every worker reads them all and the strategy splits them)."""
        val = whole_split_batches(self.split_chunks("val"), self.num_val_tokens,
                                  data_config.context_length, data_config.batch_size, pad_id)
        options = tf.data.Options()  # one validation shard is not a file per worker
        options.experimental_distribute.auto_shard_policy = \
            tf.data.experimental.AutoShardPolicy.DATA
        return val.with_options(options).prefetch(AUTOTUNE)

    def lm_data(self, data_config, *, start_step: int = 0, epochs: Optional[int] = None,
                pad_id: int = 0, **reading) -> LMData:
        """`LMData` from the shards (one input pipeline): what `build_lm_data` gives for text,
        without reading any text. `reading`: `cycle_length`, `shuffle_buffer`."""
        T, B = data_config.context_length, data_config.batch_size
        train_windows = sum(max(0, (s.tokens - 1) // T) for s in self.manifest.train)
        val_windows = max(0, (self.num_val_tokens - 1) // T)
        if val_windows < B or train_windows < B:
            raise DataError(f"The prepared directory {self.path!r} is too small for batches of "
                            f"{B} windows of {T + 1} tokens: {train_windows} training and "
                            f"{val_windows} validation windows.")
        return LMData(train=self.train_batches(data_config, start_step=start_step,
                                               epochs=epochs, **reading),
                      val=self.val_batches(data_config, pad_id),
                      num_train_tokens=self.num_train_tokens,
                      num_val_tokens=self.num_val_tokens, train_windows=train_windows,
                      val_batches=math.ceil(math.ceil((self.num_val_tokens - 1) / T) / B),
                      streaming=True)


def open_data(source: str):
    """A `PreparedCorpus` if `source` is a prepared directory, else `load_corpus(source)`.

    A directory that holds shards or a tokenizer but no manifest is refused (an interrupted
    `llm-tf prepare`, or a run directory), rather than read as text.
    """
    from llm_tf.data.corpora import load_corpus
    if isinstance(source, str) and "://" not in source and os.path.isdir(source):
        names = os.listdir(source)
        if MANIFEST_FILE not in names and RUN_CONFIG in names and TOKENIZER_DIR in names:
            raise DataError(f"{source!r} is a run directory (it has {RUN_CONFIG}), which "
                            "--data does not take: give a corpus or a prepared directory; "
                            f"reuse the run's tokenizer with --tokenizer-from {source}, or "
                            f"continue the run with --resume --run-dir {source}.")
        if MANIFEST_FILE not in names and (TOKENIZER_DIR in names or any(
                n.endswith((".bin", ".bin.tmp")) for n in names)):
            raise DataError(f"{source!r} is not a prepared directory: it has shards or a "
                            f"tokenizer but no {MANIFEST_FILE} (an interrupted `llm-tf "
                            "prepare`?); prepare it again.")
    if isinstance(source, str) and is_prepared(source):
        return PreparedCorpus(source)
    return load_corpus(source)
