"""The gpt2 tokenizer: the same ids as OpenAI's encoder.py, as TensorFlow ops everywhere."""

import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from gpt2_reference import END_OF_TEXT, Encoder, learn_bpe, write_tokenizer_files

from llm_tf.data import builtin_text
from llm_tf.data.seq2seq import make_seq2seq_dataset
from llm_tf.tokenizers import IGNORE_LABEL, GPT2Tokenizer, load_tokenizer, train_tokenizer
from llm_tf.tokenizers.gpt2 import WHITESPACE, read_merges, read_vocab

CHINESE = (Path(__file__).parent / "data" / "zh_sample.txt").read_text(encoding="utf-8")
ACCENTED = "Café crème, naïve façade; Ærøskøbing — déjà vu à Zürich. Ça s'est passé l'été."
EMOJI = "Launch 🚀 at 10:00 👍🏽, then party 🎉🎉! 👨‍👩‍👧 ✈️ 🇫🇷"
# What the merges are learned from; the texts compared below are other text of each kind.
TRAINING_TEXT = (builtin_text()[:20_000] + CHINESE[:2_000] + ACCENTED + EMOJI
                 + "    indented(code)\n        deeper  \n")
SAMPLES = {
    "english": builtin_text()[100_000:102_000],
    "accented": "Les élèves ont dîné à l'hôtel; naïveté, cœur, Øresund, Straße, Ångström.",
    "chinese": CHINESE[2_000:2_600],
    "emoji": "Ship it 🚢🚢🚢! Thumbs 👍🏿👍, family 👩‍👩‍👦, flags 🇯🇵🇰🇷, keycap 1️⃣.",
    # Where the lookahead `\s+(?!\S)` matters, contractions, and Unicode spaces.
    "whitespace": ("  two  spaces,\ttab,\r\nCRLF\n\n  indented\n    'sup   's  "
                   "don't I'M we'll  'll\u3000\u3000字 \xa0 x\u2003y\t\t\tz  \n\n"),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("gpt2_tokenizer")
    vocab, merges = learn_bpe(TRAINING_TEXT, 300)
    write_tokenizer_files(directory, vocab, merges)
    return directory, vocab, merges


@pytest.fixture(scope="module")
def tokenizer(files):
    directory, _, _ = files
    return GPT2Tokenizer.from_files(directory / "vocab.json", directory / "merges.txt")


@pytest.fixture(scope="module")
def reference(files):
    _, vocab, merges = files
    return Encoder(vocab, merges)


def _ids(tokenizer, texts):
    return tokenizer.encode(texts).to_list()


def test_the_test_merges_exercise_chains_and_multibyte_symbols(files):
    _, vocab, merges = files
    assert len(vocab) == 256 + 300 + 1 and vocab[END_OF_TEXT] == 556 and vocab["!"] == 0
    assert any(a == b for a, b in merges)  # e.g. "Ġ Ġ": chains like "a a a" merge left first
    assert any(ord(c) >= 0x100 for a, b in merges for c in a + b)  # bytes of non-ASCII text


@pytest.mark.parametrize("kind", list(SAMPLES))
def test_ids_equal_the_reference_encoder(tokenizer, reference, kind):
    text = SAMPLES[kind]
    assert _ids(tokenizer, [text])[0] == reference.encode(text)
    # Line by line too (how the LM pipeline feeds text), and as a scalar.
    lines = text.splitlines(keepends=True)
    assert _ids(tokenizer, lines) == [reference.encode(line) for line in lines]
    assert tokenizer.encode(text).numpy().tolist() == reference.encode(text)


def test_random_text_equals_the_reference(tokenizer, reference):
    """Random strings over the characters where the two regexes could part ways: every kind of
    whitespace, apostrophes, contraction letters, digits, a combining accent, CJK, emoji."""
    alphabet = (list(" '\"sSdtlmrve1é字🙂.!-\u0301a") + [chr(c) for c in WHITESPACE]
                + [" "] * 10 + ["\n"] * 3)
    rng = random.Random(14)
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
             for _ in range(400)]
    assert _ids(tokenizer, texts) == [reference.encode(t) for t in texts]


def test_decode_inverts_encode_and_equals_the_reference(tokenizer, reference):
    texts = list(SAMPLES.values()) + ["", " ", "\n"]
    ids = tokenizer.encode(texts)
    decoded = [s.decode("utf-8") for s in tokenizer.decode(ids).numpy()]
    assert decoded == texts == [reference.decode(row) for row in ids.to_list()]
    # A cut multi-byte character decodes to U+FFFD, as the reference (errors="replace").
    ids = reference.encode("é")
    if len(ids) > 1:
        assert tokenizer.decode(ids[:1]).numpy().decode() == reference.decode(ids[:1])


def test_special_ids_follow_the_vocabulary(tokenizer, reference, files):
    _, vocab, _ = files
    end = vocab[END_OF_TEXT]
    assert (tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id, tokenizer.unk_id) == \
        (end, end, end, None)
    assert tokenizer.vocab_size == len(vocab)
    framed = tokenizer.encode(["fox"], add_bos=True, add_eos=True)[0].numpy().tolist()
    assert framed == [end, *reference.encode("fox"), end]
    assert tokenizer.decode(framed).numpy().decode() == "fox"  # BOS/EOS/PAD dropped
    assert tokenizer.decode([0, -1, len(vocab)]).numpy().decode() == "!\ufffd\ufffd"
    # As in encoder.py, the *text* "<|endoftext|>" is ordinary text, not the special id.
    assert _ids(tokenizer, [END_OF_TEXT])[0] == reference.encode(END_OF_TEXT)
    assert end not in reference.encode(END_OF_TEXT)


def test_inside_tf_function_dataset_map_and_after_reseeding(tokenizer, reference):
    import keras

    texts = [SAMPLES["english"][:300], SAMPLES["emoji"], ""]
    expected = [reference.encode(t) for t in texts]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def encode(batch):
        return tokenizer.encode(batch)

    assert encode(tf.constant(texts)).to_list() == expected
    keras.utils.set_random_seed(4321)  # clears the eager kernel cache (see test_tokenizers.py)
    mapped = tf.data.Dataset.from_tensor_slices(texts).map(tokenizer.encode,
                                                          num_parallel_calls=tf.data.AUTOTUNE)
    assert [ids.tolist() for ids in mapped.as_numpy_iterator()] == expected
    keras.utils.set_random_seed(1337)


def test_save_load_writes_the_same_files(tokenizer, files, tmp_path):
    _, vocab, merges = files
    tokenizer.save(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "tokenizer.json").read_text())
    assert config["kind"] == "gpt2" and config["assets"] == ["vocab.json", "merges.txt"]
    assert config["special_tokens"] == {END_OF_TEXT: vocab[END_OF_TEXT]}
    assert read_vocab(tmp_path / "saved" / "vocab.json") == vocab
    assert read_merges(tmp_path / "saved" / "merges.txt") == merges
    loaded = load_tokenizer(tmp_path / "saved")
    assert isinstance(loaded, GPT2Tokenizer)
    texts = list(SAMPLES.values())
    assert _ids(loaded, texts) == _ids(tokenizer, texts)


class _Export(tf.Module):
    def __init__(self, tokenizer):
        super().__init__()
        self.tokenizer = tokenizer

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def encode(self, batch):
        return self.tokenizer.encode(batch).to_tensor(-1)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def round_trip(self, batch):
        return self.tokenizer.decode(self.tokenizer.encode(batch))


def test_saved_model_works_in_a_fresh_process_without_llm_tf(tokenizer, reference, tmp_path):
    texts = [SAMPLES["accented"], SAMPLES["chinese"][:100], SAMPLES["emoji"],
             SAMPLES["whitespace"]]
    tf.saved_model.save(_Export(tokenizer), str(tmp_path / "export"))
    script = textwrap.dedent(f"""
        import json, sys
        import tensorflow as tf
        import tensorflow_text  # registers RegexSplitWithOffsets; llm_tf is not imported
        loaded = tf.saved_model.load({str(tmp_path / "export")!r})
        texts = tf.constant({texts!r})
        print(json.dumps({{"ids": loaded.encode(texts).numpy().tolist(),
                          "texts": [s.decode() for s in loaded.round_trip(texts).numpy()],
                          "llm_tf": any(m.startswith("llm_tf") for m in sys.modules)}}))
    """)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=env, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert not out["llm_tf"] and out["texts"] == texts
    assert [[i for i in row if i >= 0] for row in out["ids"]] == \
        [reference.encode(t) for t in texts]


def test_seq2seq_batches_use_the_tokenizers_special_ids(tokenizer, reference):
    end = tokenizer.eos_id
    batches = make_seq2seq_dataset([("hello", "world")], tokenizer, tokenizer, batch_size=1,
                                   max_source_length=4, max_target_length=5)
    (source, target_in), target_out = next(iter(batches))
    hello, world = reference.encode("hello"), reference.encode("world")
    assert source.numpy()[0].tolist() == (hello + [end] * 4)[:4]
    assert target_in.numpy()[0].tolist() == ([end] + world + [end] * 5)[:5]
    # EOS, then labels that carry no loss (never a token id).
    assert target_out.numpy()[0].tolist() == (world + [end] + [IGNORE_LABEL] * 5)[:5]


def _renamed(vocab, old, new):
    return {new if symbol == old else symbol: i for symbol, i in vocab.items()}


@pytest.mark.parametrize("change, message", [
    (lambda v, m: (_renamed(v, "Ġ", "space"), m), "lacks the symbols"),
    (lambda v, m: (_renamed(v, END_OF_TEXT, "<|end|>"), m), "endoftext"),
    (lambda v, m: ({**v, "extra": len(v) + 5}, m), "ids must be 0"),
    (lambda v, m: (v, m + [m[0]]), "repeats"),
    (lambda v, m: (v, m + [("Ġ", "zzz")]), "'zzz', which is not in the vocabulary"),
])
def test_bad_vocabularies_are_clear_errors(files, change, message):
    _, vocab, merges = files
    with pytest.raises(ValueError, match=message):
        GPT2Tokenizer(*change(dict(vocab), list(merges)))


def test_bad_files_are_clear_errors(tmp_path):
    (tmp_path / "merges.txt").write_text("#version: 0.2\na b\nc d e\n")
    with pytest.raises(ValueError, match="line 3 is not 'left right'"):
        read_merges(tmp_path / "merges.txt")
    (tmp_path / "vocab.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        read_vocab(tmp_path / "vocab.json")
    with pytest.raises(FileNotFoundError, match="nothing.json"):
        read_vocab(tmp_path / "nothing.json")
    with pytest.raises(ValueError, match="not learned here.*import-hf"):
        train_tokenizer("gpt2", "some text")


def test_ids_are_int32_ragged_like_every_tokenizer(tokenizer):
    ids = tokenizer.encode(["a b", "c"])
    assert isinstance(ids, tf.RaggedTensor) and ids.dtype == tf.int32
    np.testing.assert_array_equal(ids.row_lengths().numpy() > 0, [True, True])
