"""Character-level tokenizer: one id per Unicode code point seen in the corpus.

The vocabulary is the corpus's distinct characters sorted by code point (as
nanoGPT's `shakespeare_char/prepare.py` does), after the four special ids; for
tiny Shakespeare that is 65 + 4 = 69 ids. A character that was not in the
training corpus encodes to UNK and decodes to U+FFFD, never an error.

Lookup is a binary search (`tf.searchsorted`) in a sorted constant of code
points: no hash-table resource, so nothing needs initialising after a
SavedModel is loaded, and encoding is a handful of vectorised ops.
"""

from __future__ import annotations

import collections
import json
import os
from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from llm_tf.tokenizers.base import (
    NUM_SPECIAL,
    SPECIAL_TOKENS,
    UNK_ID,
    UNK_TEXT,
    Tokenizer,
    check_vocab_size,
    iter_texts,
)

VOCAB_FILE = "vocab.txt"


class CharTokenizer(Tokenizer):
    """Unicode code points <-> ids 4.. ; unseen characters -> UNK.

    Args:
        chars: the vocabulary's characters (each one code point, distinct); id
            `4 + i` is `chars[i]`.

    Invalid UTF-8 in the input of `encode` is replaced by U+FFFD (which is
    itself usually UNK) rather than failing inside a running pipeline.
    """

    kind = "char"

    def __init__(self, chars: Sequence[str], name: str | None = None):
        chars = list(chars)
        bad = [c for c in chars if not isinstance(c, str) or len(c) != 1]
        if bad:
            raise ValueError("`chars` must be single characters (one code point each). "
                             f"Received: {bad[:5]!r}")
        if len(set(chars)) != len(chars):
            dupes = [c for c, n in collections.Counter(chars).items() if n > 1]
            raise ValueError(f"`chars` must be distinct. Received duplicates: {dupes[:5]!r}")
        if not chars:
            raise ValueError("`chars` must hold at least one character. Received: []")
        super().__init__(NUM_SPECIAL + len(chars), name=name)
        self.chars = tuple(chars)
        code_points = np.array([ord(c) for c in chars], dtype=np.int32)
        order = np.argsort(code_points, kind="stable")
        self._sorted_code_points = tf.constant(code_points[order])               # (V-4,)
        self._sorted_ids = tf.constant(order.astype(np.int32) + NUM_SPECIAL)     # (V-4,)
        # id -> code point; specials map to U+FFFD but only UNK survives `decode`.
        self._id_to_code_point = tf.constant(
            np.concatenate([np.full([NUM_SPECIAL], ord(UNK_TEXT), np.int32), code_points]))

    @classmethod
    def train(cls, text_source: Any, vocab_size: int | None = None) -> "CharTokenizer":
        """Learns the characters of `text_source` (str, Corpus, Dataset or iterable of str).

        Args:
            vocab_size: optional upper bound on V; when the corpus has more
                distinct characters than `vocab_size - 4`, the most frequent
                are kept (the rest become UNK). None keeps them all.
        """
        if vocab_size is not None:
            check_vocab_size(vocab_size, NUM_SPECIAL + 1, cls.kind,
                             "4 special ids and at least one character")
        counts: collections.Counter = collections.Counter()
        for text in iter_texts(text_source):
            counts.update(text)
        if not counts:
            raise ValueError("Cannot learn a character vocabulary from an empty text_source.")
        chars = list(counts)
        if vocab_size is not None and len(chars) > vocab_size - NUM_SPECIAL:
            # Most frequent first, ties by code point, so the choice is deterministic.
            chars = sorted(chars, key=lambda c: (-counts[c], ord(c)))[:vocab_size - NUM_SPECIAL]
        return cls(sorted(chars, key=ord))

    def _encode_batch(self, texts):
        code_points = tf.strings.unicode_decode(texts, "UTF-8", errors="replace")  # (B, (n))
        flat = code_points.flat_values
        position = tf.searchsorted(self._sorted_code_points, flat)
        position = tf.minimum(position, tf.size(self._sorted_code_points) - 1)
        found = tf.gather(self._sorted_code_points, position) == flat
        ids = tf.where(found, tf.gather(self._sorted_ids, position), UNK_ID)
        return code_points.with_flat_values(ids)

    def _decode_batch(self, ids):
        code_points = ids.with_flat_values(tf.gather(self._id_to_code_point, ids.flat_values))
        return tf.strings.unicode_encode(code_points, "UTF-8")  # (B,)

    def _save_assets(self, directory):
        # One JSON string literal per line and per id, so "\n", " " and "\t" stay visible.
        with open(os.path.join(directory, VOCAB_FILE), "w", encoding="utf-8") as f:
            for token in (*SPECIAL_TOKENS, *self.chars):
                f.write(json.dumps(token, ensure_ascii=False) + "\n")
        return [VOCAB_FILE]

    @classmethod
    def _from_directory(cls, directory, config):
        path = os.path.join(directory, VOCAB_FILE)
        try:
            with open(path, encoding="utf-8") as f:
                tokens = [json.loads(line) for line in f if line.strip()]
        except (OSError, ValueError) as e:
            raise ValueError(f"Cannot read the character vocabulary {path!r}: {e}") from None
        if tuple(tokens[:NUM_SPECIAL]) != SPECIAL_TOKENS:
            raise ValueError(f"{path!r} must start with {list(SPECIAL_TOKENS)}. "
                             f"Received: {tokens[:NUM_SPECIAL]!r}")
        return cls(tokens[NUM_SPECIAL:])
