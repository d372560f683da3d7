"""Corpora and the tf.data pipelines that turn them into batches.

* `load_corpus(source)` — "builtin", a file/directory/glob, or "tfds:NAME[:SPLIT]".
* `build_lm_data(data_config, tokenizer)` — `LMData`: `train` and `val` datasets of
  `(x, y)` int32 (B, T) batches for a decoder-only language model, and their sizes.
* `evaluation_batches(corpus, tokenizer, T, B)` — a whole text as validation batches.
* `prepare(corpus, tokenizer, out_dir)` — the corpus tokenized once into shards;
  `open_data(source)` opens such a directory (`PreparedCorpus`) or else the corpus.
* `make_seq2seq_dataset(pairs, source_tokenizer, target_tokenizer, ...)` —
  `((source, target_in), target_out)` batches for the encoder-decoder model.
* `load_pairs(source)` — `source<TAB>target` lines as `SentencePairs`;
  `build_pair_batches(tokenizer, train, val, T, B, seed)` — their length-bucketed batches.
* Fine-tuning sets (`label<TAB>text`, `prompt<TAB>response` files: `tsv.read_pairs`):
  `read_labelled_texts` + `encode_texts` (classification), `read_instructions` +
  `encode_instructions` (instruction tuning), batched by `shuffled_batches` /
  `ordered_batches` (`examples.py`).
"""

from llm_tf.data.buckets import PairBatches, build_pair_batches, validation_batches
from llm_tf.data.classification import LabelledTexts, encode_texts, read_labelled_texts
from llm_tf.data.corpora import FileCorpus, TextCorpus, builtin_text, load_corpus
from llm_tf.data.corpus import BUILTIN, Corpus, DataError, DataFileNotFoundError
from llm_tf.data.examples import (
    epoch_steps,
    ordered_batches,
    shuffled_batches,
    split_held_out,
)
from llm_tf.data.instructions import (
    EncodedInstructions,
    InstructionPairs,
    encode_instructions,
    read_instructions,
)
from llm_tf.data.lm import (
    LMData,
    build_lm_data,
    evaluation_batches,
    stride_windows,
    token_chunks,
)
from llm_tf.data.pairs import SentencePairs, load_pairs, split_pairs
from llm_tf.data.prepared import PreparedCorpus, open_data
from llm_tf.data.seq2seq import make_seq2seq_dataset
from llm_tf.data.shard_writer import prepare
from llm_tf.data.tfds_source import TfdsCorpus, network_available

__all__ = ["BUILTIN", "Corpus", "DataError", "DataFileNotFoundError", "FileCorpus",
           "PreparedCorpus", "open_data", "prepare",
           "TextCorpus", "TfdsCorpus", "builtin_text", "load_corpus", "network_available",
           "LMData", "build_lm_data", "evaluation_batches", "stride_windows", "token_chunks",
           "make_seq2seq_dataset", "PairBatches", "SentencePairs", "build_pair_batches",
           "load_pairs", "split_pairs", "validation_batches",
           "LabelledTexts", "encode_texts", "read_labelled_texts",
           "split_held_out", "epoch_steps", "ordered_batches", "shuffled_batches",
           "EncodedInstructions", "InstructionPairs", "encode_instructions", "read_instructions"]
