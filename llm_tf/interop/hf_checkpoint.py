"""A Hugging Face GPT-2 checkpoint directory in and out: config, tokenizer, safetensors.

    read_checkpoint(directory)              -> Checkpoint(model, tokenizer, hf_config)
    write_checkpoint(model, tokenizer, out) -> out/: config.json, model.safetensors,
                                               vocab.json, merges.txt

A directory holds `config.json`, `model.safetensors` (or shards and their
index) and the tokenizer as `vocab.json` + `merges.txt` or as `tokenizer.json`
(the `tokenizers` library's file; its BPE model must be byte-level). Everything
that can be checked without the weights' data is checked first (config, tokenizer,
every tensor's name and shape), so a bad directory fails in a second with one
line; then the model is built and each tensor is read and assigned on its own
(`safetensors_io`), so memory stays near one copy of the model. `llm-tf import-hf`
and `llm-tf export-hf` (llm_tf/commands/) put runs around these two functions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np

from llm_tf.interop import gpt2_format as fmt
from llm_tf.interop.safetensors_io import (
    SINGLE_FILE,
    CheckpointError,
    SafetensorsCheckpoint,
    write_safetensors,
)
from llm_tf.models import TransformerLM
from llm_tf.staging import staged_directory
from llm_tf.tokenizers.gpt2 import (
    END_OF_TEXT,
    MERGES_FILE,
    VOCAB_FILE,
    GPT2Tokenizer,
    read_merges,
    read_vocab,
    write_merges,
    write_vocab,
)

CONFIG_FILE = "config.json"
TOKENIZER_JSON = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
# transformers refuses safetensors files whose metadata names another framework.
METADATA = {"format": "pt"}


class Checkpoint(NamedTuple):
    model: TransformerLM
    tokenizer: GPT2Tokenizer
    hf_config: dict


def read_checkpoint(directory) -> Checkpoint:
    """The model and tokenizer of a GPT-2-architecture checkpoint directory.

    Raises:
        FileNotFoundError: no such directory, or a file it must hold is missing.
        CheckpointError: anything else wrong, in one line naming the file (and the tensor
            or field).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint directory {str(directory)!r} does not exist.")
    hf_config = _read_json(directory / CONFIG_FILE)
    try:
        config = fmt.model_config_from_hf(hf_config)
    except ValueError as error:
        raise CheckpointError(f"{str(directory / CONFIG_FILE)!r}: {error}") from None
    tokenizer = read_tokenizer(directory, hf_config)
    if tokenizer.vocab_size != config.vocab_size:
        raise CheckpointError(
            f"the tokenizer in {str(directory)!r} has {tokenizer.vocab_size} entries but "
            f"{CONFIG_FILE} says vocab_size={config.vocab_size}; they must agree.")
    tensors = SafetensorsCheckpoint(directory)
    names = _match_names(tensors, config, directory)
    model = TransformerLM(config)
    model.build()
    for mapping in fmt.tensor_mappings(config):
        _assign(mapping.variables(model), mapping, tensors.read(names[mapping.name]))
    if config.tie_embeddings and "lm_head.weight" in names:
        # A tied checkpoint may still store the head; it must be the embedding.
        head = tensors.read(names["lm_head.weight"])
        if not np.array_equal(head, model.decoder.embedding.embeddings.numpy()):
            raise CheckpointError(
                f"{str(directory)!r}: lm_head.weight differs from wte.weight although "
                "tie_word_embeddings is true.")
    return Checkpoint(model, tokenizer, hf_config)


def _match_names(tensors: SafetensorsCheckpoint, config, directory) -> dict:
    """{canonical name: name in the file} for every tensor the model needs, after checking
    that each is there once with its shape and that nothing unknown is left over."""
    found = {}
    for name in tensors.names:
        if fmt.is_buffer(name):
            continue
        canonical = fmt.canonical_name(name)
        if canonical in found:
            raise CheckpointError(f"{str(directory)!r} holds {canonical!r} twice (as "
                                  f"{found[canonical]!r} and {name!r}).")
        found[canonical] = name
    expected = fmt.tensor_mappings(config)
    for mapping in expected:
        if mapping.name not in found:
            raise CheckpointError(
                f"{str(directory)!r} has no tensor {mapping.name!r} (nor "
                f"{fmt.PREFIX + mapping.name!r}), which a GPT-2 with {CONFIG_FILE}'s "
                f"n_layer={config.num_layers} needs.")
        shape = tensors.shape(found[mapping.name])
        if shape != mapping.shape:
            raise CheckpointError(
                f"{str(directory)!r}: tensor {found[mapping.name]!r} has shape {shape}, but "
                f"{CONFIG_FILE} implies {mapping.shape}.")
    known = {m.name for m in expected} | ({"lm_head.weight"} if config.tie_embeddings else set())
    unknown = sorted(set(found) - known)
    if unknown:
        raise CheckpointError(f"{str(directory)!r} holds tensors a GPT-2 of this config does "
                              f"not have: {', '.join(map(repr, unknown[:5]))}.")
    if config.tie_embeddings and "lm_head.weight" in found and \
            tensors.shape(found["lm_head.weight"]) != (config.vocab_size, config.d_model):
        raise CheckpointError(f"{str(directory)!r}: lm_head.weight has shape "
                              f"{tensors.shape(found['lm_head.weight'])}, not "
                              f"{(config.vocab_size, config.d_model)}.")
    return found


def _assign(variables: list, mapping: fmt.TensorMapping, array: np.ndarray) -> None:
    if mapping.transposed:
        array = array.T  # (out, in) -> (in, out)
    parts = np.split(array, len(variables), axis=-1)  # c_attn: Q | K | V
    for variable, part in zip(variables, parts, strict=True):
        variable.assign(part)


def read_tokenizer(directory, hf_config: dict | None = None) -> GPT2Tokenizer:
    """The byte-level BPE of `directory`: vocab.json + merges.txt, else tokenizer.json.

    The end-of-text token (BOS, EOS and PAD) is the vocabulary entry whose id is
    `config.json`'s eos_token_id, or "<|endoftext|>"."""
    directory = Path(directory)
    vocab_file, merges_file = directory / VOCAB_FILE, directory / MERGES_FILE
    if vocab_file.is_file() or merges_file.is_file():
        vocab, merges = read_vocab(vocab_file), read_merges(merges_file)
    elif (directory / TOKENIZER_JSON).is_file():
        vocab, merges = _read_tokenizer_json(directory / TOKENIZER_JSON)
    else:
        raise FileNotFoundError(f"{str(directory)!r} holds no tokenizer: expected {VOCAB_FILE} "
                                f"and {MERGES_FILE}, or {TOKENIZER_JSON}.")
    end_of_text = END_OF_TEXT
    eos_id = (hf_config or {}).get("eos_token_id")
    if isinstance(eos_id, int):
        by_id = {i: symbol for symbol, i in vocab.items()}
        end_of_text = by_id.get(eos_id, END_OF_TEXT)
    try:
        return GPT2Tokenizer(vocab, merges, end_of_text)
    except ValueError as error:
        raise CheckpointError(f"the tokenizer in {str(directory)!r}: {error}") from None


def _read_tokenizer_json(path: Path) -> tuple[dict, list]:
    """(vocab, merges) of a `tokenizers` file holding a byte-level BPE."""
    data = _read_json(path)
    model = data.get("model") or {}
    if model.get("type") != "BPE":
        raise CheckpointError(f"{str(path)!r}: the tokenizer model is {model.get('type')!r}, "
                              "not a BPE.")
    pre = data.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    byte_level = [s for s in steps if s.get("type") == "ByteLevel"]
    if len(steps) != 1 or not byte_level or byte_level[0].get("add_prefix_space") \
            or not byte_level[0].get("use_regex", True):
        raise CheckpointError(f"{str(path)!r}: the pre-tokenizer is not GPT-2's (a ByteLevel "
                              "step alone, with GPT-2's regex and no added prefix space).")
    vocab = dict(model.get("vocab") or {})
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
              for m in model.get("merges") or []]
    for token in data.get("added_tokens") or []:
        content, token_id = token.get("content"), token.get("id")
        if vocab.setdefault(content, token_id) != token_id:
            raise CheckpointError(f"{str(path)!r}: added token {content!r} has id {token_id} "
                                  f"but the vocabulary gives it {vocab[content]}.")
    return vocab, merges


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} does not exist.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{str(path)!r} is not valid JSON: {error}") from None


# -- out ---------------------------------------------------------------------------


def write_checkpoint(model, tokenizer, out_dir, *, weights_only: bool = False,
                     overwrite: bool = False) -> Path:
    """Writes `model` (and a gpt2 `tokenizer`) as a Hugging Face GPT2LMHeadModel directory.

    A model built with use_bias=False gets zero biases and LayerNorm β (the same
    function). Other tokenizer kinds have no vocab.json/merges.txt form: with
    `weights_only` the directory holds the model alone (its ids stay llm_tf's),
    otherwise that is a `ValueError`. The directory is written next to `out_dir` and
    renamed into place; an existing non-empty `out_dir` is replaced only with `overwrite`.

    Returns:
        `out_dir` as a `Path`.
    """
    config = model.config
    hf_config = fmt.hf_config_from(config, tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id)
    if not isinstance(tokenizer, GPT2Tokenizer) and not weights_only:
        raise ValueError(f"the run's tokenizer is {tokenizer.kind!r}, which has no "
                         f"{VOCAB_FILE}/{MERGES_FILE} form; pass --weights-only to write the "
                         "model alone (its token ids stay llm_tf's).")
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not overwrite)):
        raise ValueError(f"{str(out_dir)!r} exists and is not empty: choose another --out or "
                         "pass --overwrite to replace it.")
    model.build()
    by_name = {fmt.checkpoint_name(m.name): m for m in fmt.tensor_mappings(config)}
    with staged_directory(out_dir) as staging:
        (staging / CONFIG_FILE).write_text(json.dumps(hf_config, indent=2) + "\n")
        write_safetensors(staging / SINGLE_FILE, {n: m.shape for n, m in by_name.items()},
                          lambda name: _array(model, by_name[name]), METADATA)
        if isinstance(tokenizer, GPT2Tokenizer):
            write_vocab(tokenizer.vocab, staging / VOCAB_FILE)
            write_merges(tokenizer.merges, staging / MERGES_FILE)
            (staging / TOKENIZER_CONFIG_FILE).write_text(json.dumps({
                "model_max_length": config.max_length, "bos_token": tokenizer.end_of_text,
                "eos_token": tokenizer.end_of_text, "unk_token": tokenizer.end_of_text,
                "add_prefix_space": False, "tokenizer_class": "GPT2Tokenizer"}, indent=2) + "\n")
    return out_dir


def _array(model, mapping: fmt.TensorMapping) -> np.ndarray:
    """The checkpoint's tensor from the model's variables (zeros for absent biases)."""
    variables = mapping.variables(model)
    width = mapping.shape[-1] // len(variables)
    parts = [np.zeros(mapping.shape[:-1] + (width,), np.float32) if v is None
             else np.asarray(v.numpy(), np.float32) for v in variables]
    array = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=-1)
    return array.T if mapping.transposed else array
