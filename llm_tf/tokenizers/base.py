"""The interface every tokenizer shares, and the special ids they all agree on.

A tokenizer is a `tf.Module` whose state is TensorFlow constants and resources
only, so that `encode`/`decode` are plain TF ops: they run eagerly, inside a
`tf.function`, inside `tf.data.Dataset.map`, and inside a SavedModel that is
loaded by a process which imports only `tensorflow` and `tensorflow_text`
(design document: "tokenizer (tensorflow-text ops: in-graph, so it can be
exported)").

Special ids are properties of each tokenizer (`pad_id`, `unk_id`, `bos_id`,
`eos_id`), and everything downstream (the decode loop, the export, the data
pipelines) reads them from the tokenizer it is given. The kinds llm_tf learns
itself reserve the same four, PAD=0, UNK=1, BOS=2, EOS=3 (the module constants
below), and start their vocabulary proper at id 4. A tokenizer that comes with
published weights keeps that model's ids instead, since the rows of its
embedding are indexed by them: GPT-2's `<|endoftext|>` (50256) is its BOS, EOS
and PAD, and byte-level BPE has no UNK (`unk_id` is None).
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable, Iterator

import tensorflow as tf

# The special ids of llm_tf's own tokenizers (and the defaults of code that has no tokenizer).
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[BOS]", "[EOS]")
NUM_SPECIAL = len(SPECIAL_TOKENS)
# What UNK decodes to: U+FFFD REPLACEMENT CHARACTER, the Unicode way to say
# "a character was here that could not be represented".
UNK_TEXT = "\ufffd"
# A *label* (never a token id) that carries no loss: padded targets, prompts in instruction
# tuning. PyTorch's `ignore_index` default and Hugging Face's convention (llm_tf.training.losses).
IGNORE_LABEL = -100
CONFIG_FILE = "tokenizer.json"
FORMAT_VERSION = 1


def iter_texts(text_source: Any) -> Iterator[str]:
    """Yields the Python strings of `text_source`, streaming where it can.

    Accepted: a `str` (the text itself, not a path), an object with an
    `iter_text()` method (an `llm_tf.data.Corpus`), a `tf.data.Dataset` of
    scalar strings, or any iterable of `str`/`bytes`.
    """
    if isinstance(text_source, str):
        yield text_source
    elif hasattr(text_source, "iter_text"):
        yield from text_source.iter_text()
    elif isinstance(text_source, tf.data.Dataset):
        for value in text_source.as_numpy_iterator():
            yield value.decode("utf-8", errors="replace")
    elif isinstance(text_source, Iterable):
        for value in text_source:
            yield value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value
    else:
        raise ValueError("`text_source` must be a str, a Corpus, a tf.data.Dataset of strings "
                         f"or an iterable of str. Received: {type(text_source).__name__}")


def iter_lines(text_source: Any, max_chars: int | None = None) -> Iterator[str]:
    """Yields the lines (without their line ends) of `text_source`, at most `max_chars` chars."""
    seen = 0
    for text in iter_texts(text_source):
        for line in text.splitlines():
            if max_chars is not None and seen >= max_chars:
                return
            seen += len(line) + 1
            yield line


class Tokenizer(tf.Module):
    """Text <-> token ids, as TensorFlow ops.

    Subclasses implement `_encode_batch` (strings [B] -> ragged ids [B, (n)]),
    `_decode_batch` (ragged ids [B, (n)] without PAD/BOS/EOS -> strings [B]),
    `_settings`/`_save_assets` and `_from_directory`. Everything shape- and
    special-id-related lives here, once.

    Attributes:
        kind: "char", "byte", "wordpiece", "sentencepiece" or "gpt2".
        vocab_size: V, a Python int; ids are in [0, V).
        pad_id, unk_id, bos_id, eos_id: this tokenizer's special ids (Python ints;
            `unk_id` None if nothing is ever unknown); 0, 1, 2, 3 for the kinds
            llm_tf learns. PAD, BOS and EOS may share one id (GPT-2's).
    """

    kind = ""

    def __init__(self, vocab_size: int, name: str | None = None, *, pad_id: int = PAD_ID,
                 unk_id: int | None = UNK_ID, bos_id: int = BOS_ID, eos_id: int = EOS_ID):
        super().__init__(name=name or f"{self.kind}_tokenizer")
        self._vocab_size = int(vocab_size)
        for label, value in (("pad_id", pad_id), ("unk_id", unk_id), ("bos_id", bos_id),
                             ("eos_id", eos_id)):
            if not (value is None and label == "unk_id") and not (
                    isinstance(value, int) and 0 <= value < self._vocab_size):
                raise ValueError(f"`{label}` must be an id in [0, {self._vocab_size}). "
                                 f"Received: {label}={value!r}")
        self.pad_id, self.unk_id, self.bos_id, self.eos_id = pad_id, unk_id, bos_id, eos_id

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"

    # --- text -> ids ---------------------------------------------------------

    def encode(self, texts, add_bos: bool = False, add_eos: bool = False):
        """Token ids of `texts`.

        Args:
            texts: a scalar string -> returns int32 ids of shape (n,);
                or strings of shape (B,) -> returns an int32 `tf.RaggedTensor` (B, (n)).
            add_bos: prepend BOS to each sequence.
            add_eos: append EOS to each sequence.
        """
        texts = tf.convert_to_tensor(texts, dtype=tf.string)
        rank = texts.shape.rank
        if rank == 0:
            return self.encode(texts[tf.newaxis], add_bos, add_eos)[0]  # (n,)
        if rank != 1:
            raise ValueError("`texts` must be a scalar string or a 1-D tensor of strings. "
                             f"Received: texts with shape {texts.shape}")
        ids = tf.cast(self._encode_batch(texts), tf.int32)  # (B, (n))
        rows = ids.nrows()
        if add_bos:
            bos = tf.RaggedTensor.from_tensor(tf.fill([rows, 1], self.bos_id))
            ids = tf.concat([bos, ids], axis=1)
        if add_eos:
            eos = tf.RaggedTensor.from_tensor(tf.fill([rows, 1], self.eos_id))
            ids = tf.concat([ids, eos], axis=1)
        return ids

    # --- ids -> text ---------------------------------------------------------

    def decode(self, ids):
        """Text of `ids`; PAD, BOS and EOS are dropped, UNK becomes U+FFFD.

        Args:
            ids: int ids of shape (n,) -> returns a scalar string;
                (B, N) dense or (B, (n)) ragged -> returns strings (B,).
                Ids outside [0, V) are treated as UNK (they decode to U+FFFD).
        """
        if isinstance(ids, tf.RaggedTensor):
            if ids.shape.rank != 2:
                raise ValueError(f"ragged `ids` must have rank 2. Received: shape {ids.shape}")
            ragged = ids
        else:
            ids = tf.convert_to_tensor(ids)
            if ids.shape.rank == 1:
                return self.decode(ids[tf.newaxis])[0]  # scalar
            if ids.shape.rank != 2:
                raise ValueError("`ids` must have shape (n,), (B, N) or be ragged (B, (n)). "
                                 f"Received: shape {ids.shape}")
            ragged = tf.RaggedTensor.from_tensor(ids)
        ragged = tf.cast(ragged, tf.int32)
        if self.unk_id is not None:  # (without an UNK, `_decode_batch` maps them to U+FFFD)
            flat = ragged.flat_values
            flat = tf.where((flat < 0) | (flat >= self.vocab_size), self.unk_id, flat)
            ragged = ragged.with_flat_values(flat)
        keep = (ragged != self.pad_id) & (ragged != self.bos_id) & (ragged != self.eos_id)
        return self._decode_batch(tf.ragged.boolean_mask(ragged, keep))

    # --- persistence ---------------------------------------------------------

    def save(self, directory: str | os.PathLike) -> str:
        """Writes `tokenizer.json` plus this kind's plain asset files into `directory`."""
        directory = os.fspath(directory)
        os.makedirs(directory, exist_ok=True)
        assets = self._save_assets(directory)
        config = {"kind": self.kind, "format_version": FORMAT_VERSION,
                  "vocab_size": self.vocab_size,
                  "special_tokens": self._special_tokens(),
                  "special_ids": {"pad_id": self.pad_id, "unk_id": self.unk_id,
                                  "bos_id": self.bos_id, "eos_id": self.eos_id},
                  "assets": assets, **self._settings()}
        with open(os.path.join(directory, CONFIG_FILE), "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2, ensure_ascii=False)
            f.write("\n")
        return directory

    def _settings(self) -> dict:
        return {}

    def _special_tokens(self) -> dict:
        """{surface form: id} of the special tokens, for readers of `tokenizer.json`."""
        return dict(zip(SPECIAL_TOKENS, range(NUM_SPECIAL)))

    def _save_assets(self, directory: str) -> list[str]:
        return []

    @classmethod
    def _from_directory(cls, directory: str, config: dict) -> "Tokenizer":
        raise NotImplementedError

    # --- for subclasses ------------------------------------------------------

    def _encode_batch(self, texts: tf.Tensor) -> tf.RaggedTensor:
        raise NotImplementedError

    def _decode_batch(self, ids: tf.RaggedTensor) -> tf.Tensor:
        """Ragged ids (B, (n)) without PAD/BOS/EOS -> strings (B,). Ids are in [0, V), but
        for a tokenizer without UNK, which must itself decode the others to U+FFFD."""
        raise NotImplementedError


def read_config(directory: str | os.PathLike) -> dict:
    """The parsed `tokenizer.json` of `directory`, with errors that name the file."""
    path = os.path.join(os.fspath(directory), CONFIG_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No tokenizer saved in {os.fspath(directory)!r}: {path!r} does "
                                "not exist (write one with `tokenizer.save(directory)`).")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path!r} is not valid JSON: {e}") from None
    if not isinstance(config, dict) or "kind" not in config:
        raise ValueError(f"{path!r} does not describe a tokenizer (no 'kind' key).")
    return config


def check_vocab_size(vocab_size: Any, minimum: int, kind: str, why: str) -> None:
    """Raises a `ValueError` naming `vocab_size` if it is not an int >= `minimum`."""
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool):
        raise ValueError(f"`vocab_size` must be an integer. Received: vocab_size={vocab_size!r}")
    if vocab_size < minimum:
        raise ValueError(f"`vocab_size` is too small for the {kind} tokenizer: it needs at least "
                         f"{minimum} ({why}). Received: vocab_size={vocab_size}")
