"""SentencePiece tokenizer: trained with `sentencepiece`, applied with tensorflow-text.

Settings chosen so that the scheme is **lossless** (`decode(encode(s)) == s`
for any text): `normalization_rule_name="identity"` (no NFKC),
`add_dummy_prefix=False` and `remove_extra_whitespaces=False` (whitespace kept
exactly), and `byte_fallback=True` (a character outside the vocabulary, or a
newline, becomes its UTF-8 byte pieces <0xNN> instead of UNK). The special
ids are pinned to PAD=0, UNK=1, BOS=2, EOS=3 and UNK's surface is U+FFFD, the
same as every other tokenizer here. Byte fallback reserves 256 ids, so V must
exceed 260 plus the characters that cover `character_coverage` of the text.

`vocab_size` is a soft limit (`hard_vocab_limit=False`): a tiny corpus yields
fewer pieces instead of an error; `tokenizer.vocab_size` is the real size.

**The model resource outlives `tf.random.set_seed`.** tensorflow-text keeps the
SentencePiece model in a resource owned by the eager kernel that made it
(`_SentencepieceModelResource`, "TODO(b/318839908)"). `tf.random.set_seed`, which
`keras.utils.set_random_seed` calls, clears the eager kernel cache, and with it that
resource: every later `encode` failed with "Resource .../SentencepieceResource does not
exist". `llm-tf train` seeds after learning the tokenizer, so `--tokenizer sentencepiece`
failed on every corpus while the unit tests, which never seeded in between, passed.
Here the resource gets a `shared_name` (the model's SHA-256), which makes the resource
manager, not the kernel, its owner; identical models share one resource.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from typing import Any

import sentencepiece
import tensorflow as tf
import tensorflow_text as tf_text

# The op library behind tensorflow_text.SentencepieceTokenizer (its resource-making op).
from tensorflow_text.python.ops.sentencepiece_tokenizer import gen_sentencepiece_tokenizer

from llm_tf.tokenizers.base import (
    BOS_ID,
    EOS_ID,
    NUM_SPECIAL,
    PAD_ID,
    UNK_ID,
    UNK_TEXT,
    Tokenizer,
    check_vocab_size,
    iter_lines,
)

MODEL_FILE = "sentencepiece.model"
VOCAB_FILE = "sentencepiece.vocab"  # human-readable copy; loading needs only the model
# The trainer keeps a uniform sample of this many sentences (lines) in memory.
DEFAULT_MAX_SENTENCES = 2_000_000
MIN_VOCAB_SIZE = NUM_SPECIAL + 256 + 1


class SentencePieceTokenizer(Tokenizer):
    """SentencePiece (unigram or BPE) applied by `tensorflow_text.SentencepieceTokenizer`.

    Args:
        model_proto: the serialized SentencePiece model (the bytes of
            `sentencepiece.model`), with PAD/UNK/BOS/EOS at ids 0..3.
    """

    kind = "sentencepiece"

    def __init__(self, model_proto: bytes, name: str | None = None):
        processor = sentencepiece.SentencePieceProcessor(model_proto=model_proto)
        ids = (processor.pad_id(), processor.unk_id(), processor.bos_id(), processor.eos_id())
        if ids != (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
            raise ValueError("The SentencePiece model must put pad, unk, bos, eos at ids "
                             f"0, 1, 2, 3 (train it with `SentencePieceTokenizer.train`). "
                             f"Received: {ids}")
        super().__init__(processor.vocab_size(), name=name)
        self.model_proto = bytes(model_proto)
        self._pieces = [processor.id_to_piece(i) for i in range(processor.vocab_size())]
        self._tokenizer = tf_text.SentencepieceTokenizer(model=self.model_proto,
                                                          out_type=tf.int32)
        self._tokenizer._model_resource = _SharedModelResource(self.model_proto)

    @classmethod
    def train(cls, text_source: Any, vocab_size: int = 8000, model_type: str = "unigram",
              character_coverage: float = 0.9995,
              max_sentences: int = DEFAULT_MAX_SENTENCES) -> "SentencePieceTokenizer":
        """Trains a model of at most `vocab_size` pieces on the lines of `text_source`.

        Args:
            model_type: "unigram" (SentencePiece's default) or "bpe".
            character_coverage: share of characters the vocabulary must cover;
                rarer characters fall back to bytes (0.9995 is SentencePiece's
                advice for large character sets such as Chinese).
            max_sentences: the trainer samples this many lines uniformly
                (reservoir sampling) so that memory stays bounded on big corpora.
        """
        check_vocab_size(vocab_size, MIN_VOCAB_SIZE, cls.kind,
                         "4 special ids, 256 byte-fallback pieces and one character")
        if model_type not in ("unigram", "bpe"):
            raise ValueError("`model_type` must be 'unigram' or 'bpe'. "
                             f"Received: model_type={model_type!r}")
        lines = (line for line in iter_lines(text_source) if line)
        first = next(lines, None)
        if first is None:
            raise ValueError("Cannot train SentencePiece on an empty text_source.")
        model = io.BytesIO()
        try:
            sentencepiece.SentencePieceTrainer.train(
                sentence_iterator=_chain(first, lines), model_writer=model,
                vocab_size=vocab_size, model_type=model_type, hard_vocab_limit=False,
                character_coverage=character_coverage, byte_fallback=True,
                normalization_rule_name="identity", add_dummy_prefix=False,
                remove_extra_whitespaces=False, allow_whitespace_only_pieces=True,
                pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
                unk_surface=UNK_TEXT, input_sentence_size=max_sentences,
                shuffle_input_sentence=True, minloglevel=2)
        except RuntimeError as e:
            needed = re.search(r"smaller than required_chars\. \d+ vs (\d+)", str(e))
            if needed:
                raise ValueError(
                    f"`vocab_size` is too small for the sentencepiece tokenizer on this corpus: "
                    f"it needs at least {needed.group(1)} (4 specials, 256 byte pieces and the "
                    f"characters covering {character_coverage:.2%} of the text). "
                    f"Received: vocab_size={vocab_size}") from None
            raise ValueError(f"SentencePiece training failed: {e}") from None
        return cls(model.getvalue())

    def _encode_batch(self, texts):
        return self._tokenizer.tokenize(texts)  # (B, (n))

    def _decode_batch(self, ids):
        return self._tokenizer.detokenize(ids)  # (B,)

    def _save_assets(self, directory):
        with open(os.path.join(directory, MODEL_FILE), "wb") as f:
            f.write(self.model_proto)
        with open(os.path.join(directory, VOCAB_FILE), "w", encoding="utf-8") as f:
            f.writelines(f"{piece}\n" for piece in self._pieces)
        return [MODEL_FILE, VOCAB_FILE]

    @classmethod
    def _from_directory(cls, directory, config):
        path = os.path.join(directory, MODEL_FILE)
        try:
            with open(path, "rb") as f:
                return cls(f.read())
        except OSError as e:
            raise ValueError(f"Cannot read the SentencePiece model {path!r}: {e}") from None


class _SharedModelResource(tf.saved_model.experimental.TrackableResource):
    """The SentencePiece model as a resource named by its digest (see the module docstring).

    Replaces tensorflow-text's `_SentencepieceModelResource`, whose `SentencepieceOp` has no
    `shared_name` and so dies with the eager kernel cache. Tracked like it, so a SavedModel
    recreates it on load.
    """

    def __init__(self, model_proto: bytes):
        super().__init__()
        self._model_proto = model_proto
        self._shared_name = "llm_tf_sentencepiece_" + hashlib.sha256(model_proto).hexdigest()
        _ = self.resource_handle  # created now, eagerly

    def _create_resource(self):
        return gen_sentencepiece_tokenizer.sentencepiece_op(
            model=self._model_proto, shared_name=self._shared_name)


def _chain(first, rest):
    yield first
    yield from rest
