"""GPT-2's byte-level BPE (Radford et al. 2019, §2.2), applied with TensorFlow ops.

OpenAI's `encoder.py` turns text into ids in four steps; each is a few vectorised
ops here, so encoding runs eagerly, in a `tf.function`, in `tf.data.Dataset.map`
and inside a SavedModel:

1. **Pre-tokenize** with the regex
   ``'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+``
   into words ("Hello", " world", "'s", " 123", "!!", "  ", ...); merges never cross
   a word boundary. (`pretokenize`, below.)
2. **Bytes to symbols**: each byte of a word's UTF-8 is a symbol, the 256 byte
   values standing for 256 printable characters (`bytes_to_unicode`), which is how
   `vocab.json` spells them: "Ġworld" is " world".
3. **Merge**: repeatedly merge, in every word, the adjacent pair of symbols whose
   merge comes first in `merges.txt` (all its occurrences, left to right), until no
   pair of the word is in `merges.txt`. (`_merge`, a `tf.while_loop`.)
4. **Look up** each final symbol's id in `vocab.json`.

**The lookahead.** ``\\s+(?!\\S)`` gives a run of whitespace before a word all but
its last character, which then starts the word (" " + "world" = " world"; a tab
or newline stays a word of its own). RE2, the regex engine of TensorFlow, has no
lookahead. So step 1 first cuts the text before the last character of every run
of two or more whitespace characters that is followed by a non-space, and then
applies the regex without the lookahead alternative to each piece: no word of the
original regex crosses such a cut, and within a piece both regexes find the same
words (tests/test_tokenizers_gpt2.py checks this against the `regex` package on
English, accented, Chinese, emoji and random text). No marker character is
inserted, so no input text can collide with one. ``\\s`` is spelled out as the
25 characters of Unicode's White_Space property (the `regex` package's ``\\s``;
RE2's is ASCII only).

**Not unknown, not special.** Every byte has a symbol, so nothing is ever UNK
(`unk_id` is None). As in `encoder.py`, the text "<|endoftext|>" is encoded as
ordinary text; `add_bos`/`add_eos` insert the end-of-text id, which is BOS, EOS
and PAD alike (Hugging Face's convention for GPT-2: pad = eos). Invalid UTF-8 in
the input becomes U+FFFD before pre-tokenization.

Files (the Hugging Face/OpenAI formats, unchanged): `vocab.json` {symbol string:
id} and `merges.txt` ("#version: 0.2", then one "left right" pair per line, by
rank).
"""

from __future__ import annotations

import json
import os
import types
from typing import Mapping, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

from llm_tf.tokenizers.base import Tokenizer

VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
MERGES_HEADER = "#version: 0.2"
END_OF_TEXT = "<|endoftext|>"

# Unicode's White_Space characters: what `\s` matches in the `regex` package GPT-2 used.
WHITESPACE = (0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
              0x2028, 0x2029, 0x202F, 0x205F, 0x3000)
_SPACE_CLASS = "".join(f"\\x{{{c:x}}}" for c in WHITESPACE)
# GPT-2's pre-tokenization regex without its lookahead alternative `\s+(?!\S)` (see the
# module docstring for why that is exact after the cuts `pretokenize` makes), in RE2 syntax.
WORD_PATTERN = ("'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+"
                f"| ?[^{_SPACE_CLASS}\\p{{L}}\\p{{N}}]+|[{_SPACE_CLASS}]+")


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> character table: the 188 printable Latin-1 bytes stand for
    themselves, the other 68 (controls, space, ...) for U+0100, U+0101, ... in order, so
    every BPE symbol is printable and none is whitespace."""
    printable = {*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)}
    table, shifted = {}, 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + shifted)
            shifted += 1
    return table


_BYTE_OF = {c: bytes([b]) for b, c in bytes_to_unicode().items()}


def symbol_bytes(symbol: str) -> bytes:
    """The bytes a vocabulary entry stands for ("Ġworld" -> b" world"). Characters outside
    the byte table (none in GPT-2's vocabulary) stand for their own UTF-8."""
    return b"".join(_BYTE_OF.get(c) or c.encode("utf-8") for c in symbol)


class GPT2Tokenizer(Tokenizer):
    """Byte-level BPE with a given vocabulary and merge list (GPT-2 and its family).

    Args:
        vocab: {symbol string: id}; the ids must be exactly 0 .. V-1, and every byte's
            symbol must be present. Kept as `tokenizer.vocab` (read-only) and
            `tokenizer.merges` (a tuple), for saving.
        merges: the (left, right) pairs in rank order (first = merged first); each
            part and each merged string must be in `vocab`.
        end_of_text: the vocabulary entry that is BOS, EOS and PAD.

    Raises:
        ValueError naming what is wrong (a missing symbol, a duplicate merge, ...).
    """

    kind = "gpt2"

    def __init__(self, vocab: Mapping[str, int], merges: Sequence[tuple[str, str]],
                 end_of_text: str = END_OF_TEXT, name: str | None = None):
        vocab = dict(vocab)
        merges = [tuple(m) for m in merges]
        _check_vocab(vocab, merges, end_of_text)
        special = vocab[end_of_text]
        super().__init__(len(vocab), name=name, pad_id=special, unk_id=None, bos_id=special,
                         eos_id=special)
        # Read-only views: a tf.Module would wrap a dict or list of 50k entries into
        # trackable containers (a second of work, for nothing it needs to save).
        self.vocab = types.MappingProxyType(vocab)
        self.merges = tuple(merges)
        self.end_of_text = end_of_text
        size = len(vocab)
        byte_table = bytes_to_unicode()
        self._byte_ids = tf.constant([vocab[byte_table[b]] for b in range(256)], tf.int32)
        # A merge is looked up by its pair of ids, packed into one int64 key, in a sorted
        # constant (binary search: no hash-table resource to initialise after loading).
        keys = np.array([vocab[a] * size + vocab[b] for a, b in merges], np.int64)
        order = np.argsort(keys)
        self._num_merges = len(merges)
        self._merge_keys = tf.constant(keys[order])                                   # (M,)
        self._merge_ranks = tf.constant(order.astype(np.int32))                       # (M,)
        self._merge_results = tf.constant(
            np.array([vocab[a + b] for a, b in merges], np.int32)[order])             # (M,)
        symbols = sorted(vocab, key=vocab.get)
        # id -> bytes, plus one entry past the end for ids outside [0, V): U+FFFD.
        self._id_to_bytes = tf.constant([symbol_bytes(s) for s in symbols]
                                        + ["\ufffd".encode("utf-8")])                # (V+1,)
        self._whitespace = tf.constant(WHITESPACE, tf.int32)

    @classmethod
    def from_files(cls, vocab_file, merges_file, end_of_text: str = END_OF_TEXT,
                   ) -> "GPT2Tokenizer":
        """The tokenizer of a `vocab.json` and a `merges.txt`."""
        return cls(read_vocab(vocab_file), read_merges(merges_file), end_of_text)

    @classmethod
    def train(cls, text_source=None, vocab_size=None):
        raise ValueError("The gpt2 tokenizer is not learned here: it comes with a checkpoint "
                         "(`llm-tf import-hf DIR`) or from its files "
                         "(`GPT2Tokenizer.from_files(vocab.json, merges.txt)`).")

    # -- text -> ids ------------------------------------------------------------

    def pretokenize(self, texts):
        """Strings (B,) -> GPT-2's words, ragged strings (B, (w)) (step 1)."""
        code_points = tf.strings.unicode_decode(texts, "UTF-8", errors="replace")  # (B, (c))
        flat = code_points.flat_values                                             # (C,)
        row = code_points.value_rowids()                                           # (C,)
        position = tf.range(tf.size(flat, out_type=tf.int64)) - tf.gather(
            code_points.row_starts(), row)                                          # (C,)
        length = tf.gather(code_points.row_lengths(), row)                         # (C,)
        space = tf.reduce_any(flat[:, None] == self._whitespace[None, :], axis=1)  # (C,)
        follows_space = tf.concat([[False], space[:-1]], 0) & (position > 0)
        before_word = tf.concat([~space[1:], [False]], 0) & (position < length - 1)
        # A piece starts at each text's start and at the last character of a run of
        # two or more whitespace characters that a non-space follows (`\s+(?!\S)`).
        starts = (position == 0) | (space & follows_space & before_word)            # (C,)
        piece = tf.cumsum(tf.cast(starts, tf.int64)) - 1                            # (C,)
        pieces = tf.RaggedTensor.from_value_rowids(
            flat, piece, nrows=tf.reduce_sum(tf.cast(starts, tf.int64)))           # (P, (c))
        pieces_per_text = tf.math.unsorted_segment_sum(
            tf.cast(starts, tf.int64), row, code_points.nrows())                    # (B,)
        words = tf_text.regex_split(tf.strings.unicode_encode(pieces, "UTF-8"),
                                    WORD_PATTERN, WORD_PATTERN)                     # (P, (w))
        return tf.RaggedTensor.from_row_lengths(words, pieces_per_text).merge_dims(1, 2)

    def _encode_batch(self, texts):
        words = self.pretokenize(texts)                                            # (B, (w))
        byte_values = tf.strings.unicode_decode(words, "ISO-8859-1")               # (B, (w), (b))
        symbols = byte_values.values.with_flat_values(
            tf.gather(self._byte_ids, byte_values.flat_values))                    # (W, (b))
        if self._num_merges:
            symbols = self._merge(symbols)                                         # (W, (t))
        return byte_values.with_values(symbols).merge_dims(1, 2)                   # (B, (n))

    def _merge(self, words):
        """BPE on ragged symbol ids (W, (b)) -> (W, (t)): every word merges its best pair
        (all its occurrences) per iteration, until no word has a pair in the merge list."""
        size = tf.constant(self.vocab_size, tf.int64)
        no_merge = tf.constant(self._num_merges, tf.int32)  # a rank past the last

        def step(values, row_splits, _):
            row = tf.ragged.row_splits_to_segment_ids(row_splits)                 # (N,)
            num_words = tf.shape(row_splits, out_type=tf.int64)[0] - 1
            left, right = values[:-1], values[1:]                                  # (N-1,)
            pair_word = row[:-1]
            keys = tf.cast(left, tf.int64) * size + tf.cast(right, tf.int64)
            slot = tf.minimum(tf.searchsorted(self._merge_keys, keys),
                              self._num_merges - 1)
            known = (row[1:] == pair_word) & (tf.gather(self._merge_keys, slot) == keys)
            rank = tf.where(known, tf.gather(self._merge_ranks, slot), no_merge)
            best = tf.math.unsorted_segment_min(rank, pair_word, num_words)        # (W,)
            chosen = known & (rank == tf.gather(best, pair_word))
            chosen = _leftmost_disjoint(chosen)
            merged = tf.where(chosen, tf.gather(self._merge_results, slot), left)
            keep = tf.concat([tf.ones_like(values[:1], tf.bool), ~chosen], 0)      # (N,)
            values = tf.boolean_mask(tf.concat([merged, values[-1:]], 0), keep)
            removed = tf.math.unsorted_segment_sum(tf.cast(chosen, tf.int64), pair_word,
                                                   num_words)                      # (W,)
            row_splits = row_splits - tf.concat([[0], tf.cumsum(removed)], 0)
            return values, row_splits, tf.reduce_any(chosen)

        values, row_splits, _ = tf.while_loop(
            lambda values, row_splits, changed: changed, step,
            (words.flat_values, words.row_splits, tf.constant(True)),
            shape_invariants=(tf.TensorShape([None]), tf.TensorShape([None]),
                              tf.TensorShape([])))
        return tf.RaggedTensor.from_row_splits(values, row_splits, validate=False)

    # -- ids -> text ------------------------------------------------------------

    def _decode_batch(self, ids):
        flat = ids.flat_values
        flat = tf.where((flat < 0) | (flat >= self.vocab_size), self.vocab_size, flat)
        pieces = ids.with_flat_values(tf.gather(self._id_to_bytes, flat))
        joined = tf.strings.reduce_join(pieces, axis=1)  # (B,)
        # A sample may end inside a multi-byte character: repair to valid UTF-8.
        return tf.strings.unicode_transcode(joined, "UTF-8", "UTF-8", errors="replace")

    # -- files --------------------------------------------------------------------

    def _settings(self):
        return {"end_of_text": self.end_of_text}

    def _special_tokens(self):
        return {self.end_of_text: self.eos_id}

    def _save_assets(self, directory):
        write_vocab(self.vocab, os.path.join(directory, VOCAB_FILE))
        write_merges(self.merges, os.path.join(directory, MERGES_FILE))
        return [VOCAB_FILE, MERGES_FILE]

    @classmethod
    def _from_directory(cls, directory, config):
        return cls.from_files(os.path.join(directory, VOCAB_FILE),
                              os.path.join(directory, MERGES_FILE),
                              config.get("end_of_text", END_OF_TEXT))


def _leftmost_disjoint(chosen):
    """Of runs of adjacent chosen pairs (only a pair (a, a) makes them, as in "a a a"),
    keep the first, third, ...: `encoder.py` merges left to right and skips a merged pair's
    right symbol. chosen: bool (N-1,) -> bool (N-1,)."""
    count = tf.cumsum(tf.cast(chosen, tf.int32))             # chosen pairs so far, inclusive
    run = tf.cumsum(tf.cast(~chosen, tf.int32))              # id of the run each pair is in
    first = tf.math.unsorted_segment_min(tf.where(chosen, count, tf.int32.max), run,
                                         tf.size(chosen) + 1)  # count at each run's first
    return chosen & ((count - tf.gather(first, run)) % 2 == 0)


def _check_vocab(vocab: dict, merges: list, end_of_text: str) -> None:
    ids = sorted(vocab.values())
    if ids != list(range(len(vocab))):
        raise ValueError(f"`vocab` ids must be 0 .. {len(vocab) - 1}, each once. Received "
                         f"{len(vocab)} entries with ids from {ids[:1]} to {ids[-1:]}")
    missing = [c for c in bytes_to_unicode().values() if c not in vocab]
    if missing:
        raise ValueError(f"`vocab` lacks the symbols of {len(missing)} byte(s) (a byte-level "
                         f"BPE vocabulary holds all 256), e.g. {missing[:5]!r}")
    if end_of_text not in vocab:
        raise ValueError(f"`vocab` has no {end_of_text!r} entry (the end-of-text token).")
    seen = set()
    for rank, merge in enumerate(merges):
        if len(merge) != 2 or not all(isinstance(p, str) and p for p in merge):
            raise ValueError(f"merge {rank + 1} is not a pair of symbols. Received: {merge!r}")
        if merge in seen:
            raise ValueError(f"merge {rank + 1} {' '.join(merge)!r} repeats an earlier one.")
        seen.add(merge)
        for symbol in (*merge, merge[0] + merge[1]):
            if symbol not in vocab:
                raise ValueError(f"merge {rank + 1} {' '.join(merge)!r} uses or makes "
                                 f"{symbol!r}, which is not in the vocabulary.")


def read_vocab(path) -> dict[str, int]:
    """`vocab.json` -> {symbol: id}, with errors that name the file."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            vocab = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path!r} does not exist.") from None
    except (OSError, ValueError) as error:
        raise ValueError(f"{path!r} is not a readable JSON vocabulary: {error}") from None
    if not isinstance(vocab, dict) or not all(
            isinstance(k, str) and isinstance(v, int) for k, v in vocab.items()):
        raise ValueError(f"{path!r} must hold a JSON object {{symbol: id}}.")
    return vocab


def read_merges(path) -> list[tuple[str, str]]:
    """`merges.txt` -> [(left, right), ...] by rank; the "#version" header line is skipped."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path!r} does not exist.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path!r} is not a readable merges file: {error}") from None
    merges = []
    for number, line in enumerate(lines, start=1):
        if not line or (number == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"{path!r} line {number} is not 'left right': {line[:80]!r}")
        merges.append((parts[0], parts[1]))
    return merges


def write_vocab(vocab: Mapping[str, int], path) -> None:
    """`vocab.json`, entries in id order (as GPT-2's)."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(dict(sorted(vocab.items(), key=lambda item: item[1])), f, ensure_ascii=False)


def write_merges(merges: Sequence[tuple[str, str]], path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(MERGES_HEADER + "\n" + "".join(f"{a} {b}\n" for a, b in merges))
