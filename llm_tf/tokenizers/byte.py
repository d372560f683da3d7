"""Byte-level tokenizer: the 256 byte values after the four special ids (V = 260).

Nothing to learn and nothing is ever UNK on encode: any text, in any script,
is its UTF-8 bytes. Sequences are longer than with a learned vocabulary (a
Chinese character is three ids), which is the price of needing no training.
"""

from __future__ import annotations

import tensorflow as tf

from llm_tf.tokenizers.base import NUM_SPECIAL, UNK_TEXT, Tokenizer


class ByteTokenizer(Tokenizer):
    """UTF-8 bytes <-> ids 4..259.

    `decode` joins the bytes and then repairs the result to valid UTF-8
    (invalid sequences, such as a character cut in half at a window edge or a
    model's unlucky sample, become U+FFFD), so decoded strings are always text.
    """

    kind = "byte"

    def __init__(self, name: str | None = None):
        super().__init__(NUM_SPECIAL + 256, name=name)
        # id -> the byte string it stands for; only UNK among the specials survives decode.
        table = [b"", UNK_TEXT.encode("utf-8"), b"", b""] + [bytes([b]) for b in range(256)]
        self._id_to_bytes = tf.constant(table)  # (260,)

    @classmethod
    def train(cls, text_source=None, vocab_size=None) -> "ByteTokenizer":
        """There is nothing to learn; the arguments are accepted for a uniform interface."""
        return cls()

    def _encode_batch(self, texts):
        # ISO-8859-1 maps every byte b to the code point b, so this is "split into
        # bytes" as a single vectorised op (there is no "BYTE" input encoding).
        byte_values = tf.strings.unicode_decode(texts, "ISO-8859-1")  # (B, (n)) in [0, 256)
        return byte_values + NUM_SPECIAL

    def _decode_batch(self, ids):
        pieces = ids.with_flat_values(tf.gather(self._id_to_bytes, ids.flat_values))
        joined = tf.strings.reduce_join(pieces, axis=1)  # (B,)
        return tf.strings.unicode_transcode(joined, "UTF-8", "UTF-8", errors="replace")

    @classmethod
    def _from_directory(cls, directory, config):
        return cls()
