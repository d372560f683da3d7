"""Tokenizers: text <-> int32 ids as TensorFlow ops, one interface for four schemes.

==============  ==========================  ==========  ===================================
kind            vocabulary                  lossless?   applied with
==============  ==========================  ==========  ===================================
"char"          code points of the corpus   yes*        searchsorted over a constant
"byte"          256 bytes, no training      yes         unicode_decode("ISO-8859-1")
"wordpiece"     bert_vocab_from_dataset     no (BERT)   tensorflow_text.FastBertTokenizer
"sentencepiece" sentencepiece trainer       yes         tensorflow_text.SentencepieceTokenizer
"gpt2"          a checkpoint's merges       yes**       RE2 regex + BPE merges in tf.while_loop
==============  ==========================  ==========  ===================================
(*) characters absent from the training corpus become UNK -> U+FFFD.
(**) GPT-2's byte-level BPE, read from `vocab.json` + `merges.txt` (`llm-tf import-hf`);
     not learned here: `train_tokenizer("gpt2", ...)` says so.

Every tokenizer has `pad_id`, `unk_id`, `bos_id`, `eos_id` (PAD=0, UNK=1, BOS=2,
EOS=3 for the kinds llm_tf learns; see `base.py`), `vocab_size`, `kind`,
`encode(texts)` (scalar -> (n,) ids; (B,) -> ragged (B, (n))), `decode(ids)`
((n,) -> scalar; (B, N) or ragged -> (B,)), `save(directory)`; and
`load_tokenizer(directory)` rebuilds any of them.

    tok = train_tokenizer("char", "hello world")
    ids = tok.encode("hello")          # int32 (5,)
    tok.decode(ids)                    # b"hello"
"""

from __future__ import annotations

import difflib
import importlib
import os
from typing import Any

from llm_tf.config import PRETRAINED_TOKENIZERS, TOKENIZERS
from llm_tf.tokenizers.base import (
    BOS_ID,
    EOS_ID,
    IGNORE_LABEL,
    NUM_SPECIAL,
    PAD_ID,
    SPECIAL_TOKENS,
    UNK_ID,
    UNK_TEXT,
    Tokenizer,
    read_config,
)
from llm_tf.tokenizers.byte import ByteTokenizer
from llm_tf.tokenizers.char import CharTokenizer

# kind -> (module, class). WordPiece, SentencePiece and GPT-2 import tensorflow_text,
# which costs a second, so they are imported only when asked for.
_CLASSES = {
    "char": ("llm_tf.tokenizers.char", "CharTokenizer"),
    "byte": ("llm_tf.tokenizers.byte", "ByteTokenizer"),
    "wordpiece": ("llm_tf.tokenizers.wordpiece", "WordPieceTokenizer"),
    "sentencepiece": ("llm_tf.tokenizers.spm", "SentencePieceTokenizer"),
    "gpt2": ("llm_tf.tokenizers.gpt2", "GPT2Tokenizer"),
}
# What `load_tokenizer` reads: the kinds llm_tf learns, then the ones that come with
# published weights.
KINDS = TOKENIZERS + PRETRAINED_TOKENIZERS
assert tuple(_CLASSES) == KINDS, "config's tokenizer kinds and the classes disagree"

__all__ = ["PAD_ID", "UNK_ID", "BOS_ID", "EOS_ID", "IGNORE_LABEL", "NUM_SPECIAL",
           "SPECIAL_TOKENS", "UNK_TEXT", "Tokenizer", "CharTokenizer", "ByteTokenizer",
           "WordPieceTokenizer", "SentencePieceTokenizer", "GPT2Tokenizer", "KINDS",
           "tokenizer_class", "train_tokenizer", "load_tokenizer"]


def tokenizer_class(kind: str) -> type[Tokenizer]:
    """The class for `kind`, or a `ValueError` naming `tokenizer` and listing the kinds."""
    if kind not in _CLASSES:
        close = difflib.get_close_matches(str(kind), KINDS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown `tokenizer` kind {kind!r}.{hint} "
                         f"Known kinds: {', '.join(KINDS)}. Received: tokenizer={kind!r}")
    module, name = _CLASSES[kind]
    return getattr(importlib.import_module(module), name)


def train_tokenizer(kind: str, text_source: Any, vocab_size: int | None = None,
                    **options: Any) -> Tokenizer:
    """Learns a tokenizer of `kind` from `text_source`.

    Args:
        kind: "char", "byte", "wordpiece" or "sentencepiece" (config.TOKENIZERS; "gpt2"
            is read from a checkpoint, not learned: a `ValueError` says so).
        text_source: the text itself (a `str`, not a path), an
            `llm_tf.data.Corpus`, a `tf.data.Dataset` of strings, or an
            iterable of strings.
        vocab_size: WordPiece/SentencePiece: target size (default 8000; the
            result may be smaller on a small corpus). char: optional upper bound
            (the most frequent characters are kept). byte: ignored (always 260).
        **options: passed to the class's `train` (e.g. `lower_case=True`,
            `model_type="bpe"`).
    """
    cls = tokenizer_class(kind)
    if vocab_size is not None or kind == "char":
        options["vocab_size"] = vocab_size
    return cls.train(text_source, **options)


def load_tokenizer(directory: str | os.PathLike) -> Tokenizer:
    """Rebuilds the tokenizer that `Tokenizer.save(directory)` wrote."""
    config = read_config(directory)
    cls = tokenizer_class(config["kind"])
    tokenizer = cls._from_directory(os.fspath(directory), config)
    if "vocab_size" in config and config["vocab_size"] != tokenizer.vocab_size:
        raise ValueError(f"{os.path.join(os.fspath(directory), 'tokenizer.json')!r} says "
                         f"vocab_size={config['vocab_size']}, but its assets hold "
                         f"{tokenizer.vocab_size} ids.")
    return tokenizer


_LAZY = {"WordPieceTokenizer": "wordpiece", "SentencePieceTokenizer": "sentencepiece",
         "GPT2Tokenizer": "gpt2"}


def __getattr__(name: str):
    if name in _LAZY:
        return tokenizer_class(_LAZY[name])
    raise AttributeError(f"module 'llm_tf.tokenizers' has no attribute {name!r}")
