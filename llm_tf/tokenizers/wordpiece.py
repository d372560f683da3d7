"""WordPiece tokenizer (BERT's): words split into the longest known pieces.

Learning uses `tensorflow_text.tools.wordpiece_vocab.bert_vocab_from_dataset`;
applying uses `tensorflow_text.FastBertTokenizer`, which is BERT's
pre-tokenization followed by `FastWordpieceTokenizer` (linear-time WordPiece),
with the vocabulary compiled into a constant model buffer (no resources).

WordPiece is **lossy**. `decode(encode(s))` is `s` after this normalisation:

1. Whitespace of any kind (spaces, tabs, newlines, runs of them) only separates
   words; it is not kept.
2. Every punctuation character (Unicode categories P*, and the ASCII symbols
   ``$+<=>^`|~``) and every CJK ideograph is a word of its own.
3. Control characters are removed.
4. A word containing a character the vocabulary lacks becomes one UNK, which
   decodes to U+FFFD (as in BERT, the whole word, not just the character).
5. Decoding joins words with one space and glues continuation pieces
   (``##ing``) to the piece before them.
6. With `lower_case=True` (off by default): lower-cased, NFD-normalised and
   stripped of accents, exactly as BERT-uncased.

So "Hello,  world!\\n你好" decodes as "Hello , world ! 你 好".
"""

from __future__ import annotations

import os
from typing import Any

import tensorflow as tf
import tensorflow_text as tf_text
from tensorflow_text.tools.wordpiece_vocab import bert_vocab_from_dataset as bert_vocab

from llm_tf.tokenizers.base import (
    NUM_SPECIAL,
    SPECIAL_TOKENS,
    UNK_ID,
    UNK_TEXT,
    Tokenizer,
    check_vocab_size,
    iter_lines,
)

VOCAB_FILE = "vocab.txt"
SUFFIX = "##"
# Learning reads at most this many characters: the vocabulary is a statistic of
# word frequencies, which a sample of tens of MB estimates well, while
# `bert_vocab_from_dataset` runs in Python and would take hours on GBs.
DEFAULT_MAX_TRAINING_CHARS = 20_000_000
# Reserved tokens, the characters of a small corpus and their "##" forms.
MIN_VOCAB_SIZE = NUM_SPECIAL + 16


class WordPieceTokenizer(Tokenizer):
    """BERT WordPiece over `FastBertTokenizer` (see the module docstring for the normalisation).

    Args:
        vocab: the pieces, id i = vocab[i]; must start with [PAD] [UNK] [BOS] [EOS].
        lower_case: BERT-uncased normalisation (lower-case, strip accents).
    """

    kind = "wordpiece"

    def __init__(self, vocab: list[str], lower_case: bool = False, name: str | None = None):
        vocab = list(vocab)
        if tuple(vocab[:NUM_SPECIAL]) != SPECIAL_TOKENS:
            raise ValueError(f"`vocab` must start with {list(SPECIAL_TOKENS)}. "
                             f"Received: {vocab[:NUM_SPECIAL]!r}")
        if len(set(vocab)) != len(vocab):
            raise ValueError("`vocab` must not repeat a piece.")
        super().__init__(len(vocab), name=name)
        self.vocab = tuple(vocab)
        self.lower_case = bool(lower_case)
        self._tokenizer = tf_text.FastBertTokenizer(
            vocab=vocab, suffix_indicator=SUFFIX, token_out_type=tf.int32,
            unknown_token=SPECIAL_TOKENS[UNK_ID], lower_case_nfd_strip_accents=self.lower_case)
        surface = [UNK_TEXT if i == UNK_ID else "" if i < NUM_SPECIAL
                   else p[len(SUFFIX):] if p.startswith(SUFFIX) else p
                   for i, p in enumerate(vocab)]
        self._surface = tf.constant(surface)                                          # (V,)
        self._is_suffix = tf.constant([i >= NUM_SPECIAL and p.startswith(SUFFIX)
                                       for i, p in enumerate(vocab)])                 # (V,)

    @classmethod
    def train(cls, text_source: Any, vocab_size: int = 8000, lower_case: bool = False,
              max_training_chars: int | None = DEFAULT_MAX_TRAINING_CHARS) -> "WordPieceTokenizer":
        """Learns a vocabulary of at most `vocab_size` pieces from `text_source`.

        The vocabulary can come out smaller than `vocab_size` on a small corpus;
        `tokenizer.vocab_size` is the real size. Only the first
        `max_training_chars` characters are read (None: all).
        """
        check_vocab_size(vocab_size, MIN_VOCAB_SIZE, cls.kind,
                         "4 reserved tokens plus single characters and their ## forms")
        lines = list(iter_lines(text_source, max_training_chars))
        if not any(line.strip() for line in lines):
            raise ValueError("Cannot learn a WordPiece vocabulary from an empty text_source.")
        dataset = tf.data.Dataset.from_tensor_slices(lines).batch(1024)
        vocab = bert_vocab.bert_vocab_from_dataset(
            dataset, vocab_size=vocab_size, reserved_tokens=list(SPECIAL_TOKENS),
            bert_tokenizer_params={"lower_case": bool(lower_case)}, learn_params={})
        return cls(vocab, lower_case=lower_case)

    def _encode_batch(self, texts):
        return self._tokenizer.tokenize(texts)  # (B, (n))

    def _decode_batch(self, ids):
        flat = ids.flat_values
        pieces = tf.gather(self._surface, flat)
        # A space before every piece that starts a word, except the first of a row.
        first = tf.ragged.range(ids.row_lengths()).flat_values == 0
        glue = tf.where(tf.gather(self._is_suffix, flat) | first, "", " ")
        words = ids.with_flat_values(tf.strings.join([glue, pieces]))
        return tf.strings.reduce_join(words, axis=1)  # (B,)

    def _settings(self):
        return {"lower_case": self.lower_case}

    def _save_assets(self, directory):
        # BERT's vocab.txt: one piece per line (pieces never contain whitespace).
        with open(os.path.join(directory, VOCAB_FILE), "w", encoding="utf-8") as f:
            f.write("\n".join(self.vocab) + "\n")
        return [VOCAB_FILE]

    @classmethod
    def _from_directory(cls, directory, config):
        path = os.path.join(directory, VOCAB_FILE)
        try:
            with open(path, encoding="utf-8") as f:
                vocab = f.read().split("\n")[:-1]
        except OSError as e:
            raise ValueError(f"Cannot read the WordPiece vocabulary {path!r}: {e}") from None
        return cls(vocab, lower_case=config.get("lower_case", False))
