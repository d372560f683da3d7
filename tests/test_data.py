"""Specifications of llm_tf.data: corpora, the split, windows, batches, resumption, errors."""

import math
import socket

import numpy as np
import pytest
import tensorflow as tf

from llm_tf import DataConfig
from llm_tf.data import (
    BUILTIN,
    DataError,
    TextCorpus,
    build_lm_data,
    builtin_text,
    corpora,
    load_corpus,
    make_seq2seq_dataset,
    tfds_source,
)
from llm_tf.tokenizers import (
    BOS_ID,
    EOS_ID,
    IGNORE_LABEL,
    PAD_ID,
    ByteTokenizer,
    CharTokenizer,
)

T, B = 8, 4


def _text(n_lines, seed=0):
    """Deterministic text whose windows of T+1 characters are (almost) all distinct."""
    rng = np.random.default_rng(seed)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota"]
    return "".join(" ".join(rng.choice(words, size=rng.integers(3, 9))) + f" {i}\n"
                   for i in range(n_lines))


TEXT = _text(300)  # ~13k characters
CHARS = CharTokenizer.train(TEXT)


def _config(**overrides):
    return DataConfig(**{"source": "unused", "context_length": T, "batch_size": B,
                         "val_fraction": 0.1, "seed": 7, **overrides})


def _batches(dataset, n=None):
    it = iter(dataset)
    out = []
    for x, y in it if n is None else (next(it) for _ in range(n)):
        out.append((x.numpy(), y.numpy()))
    return out


# --- corpora ----------------------------------------------------------------

def test_builtin_corpus_loads_offline():
    corpus = load_corpus(BUILTIN)
    text = builtin_text()
    assert 400_000 < len(text) < 600_000 and "The \"if\" statement" in text
    lines = b"".join(corpus.lines().batch(8192).map(
        lambda batch: tf.strings.reduce_join(batch)).as_numpy_iterator()).decode("utf-8")
    assert lines == text
    assert "".join(corpus.iter_text()) == text


def test_file_directory_and_glob_sources(tmp_path):
    (tmp_path / "a.txt").write_text("first line\nsecond\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_bytes("naïve\r\nlast line without newline".encode())
    (tmp_path / ".hidden").write_text("skipped\n")
    expected = "first line\nsecond\nnaïve\nlast line without newline\n"
    for source in (tmp_path, str(tmp_path / "**" / "*.txt")):
        corpus = load_corpus(source)
        assert b"".join(corpus.lines().as_numpy_iterator()).decode() == expected
    single = load_corpus(tmp_path / "a.txt")
    assert "".join(single.iter_text()) == "first line\nsecond\n"


def test_files_are_streamed_in_bounded_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(corpora, "_READ_BLOCK", 64)
    path = tmp_path / "big.txt"
    path.write_text(TEXT, encoding="utf-8")
    chunks = list(load_corpus(str(path)).iter_text())
    assert len(chunks) > 100 and "".join(chunks) == TEXT
    assert all(chunk.endswith("\n") and len(chunk) < 64 + 80 for chunk in chunks)


def test_bad_sources_name_the_file(tmp_path):
    missing = tmp_path / "missing.txt"
    with pytest.raises(FileNotFoundError, match="missing.txt") as info:
        load_corpus(missing)
    assert isinstance(info.value, ValueError)
    with pytest.raises(DataError, match="glob.*nothing"):
        load_corpus(str(tmp_path / "nothing*.txt"))
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(DataError, match="empty.txt.*empty"):
        load_corpus(empty)
    with pytest.raises(DataError, match="errors"):
        load_corpus(BUILTIN, errors="ignore")


def test_invalid_utf8_names_the_file_or_is_replaced(tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("good line\nçà va\n".encode("latin-1"))
    corpus = load_corpus(bad)
    with pytest.raises(DataError, match=r"latin1\.txt.*not valid UTF-8.*line 2"):
        corpus.validate()
    with pytest.raises(DataError, match=r"latin1\.txt"):
        list(corpus.iter_text())
    with pytest.raises(DataError, match=r"latin1\.txt"):
        build_lm_data(_config(), CHARS, corpus=corpus)
    replaced = load_corpus(bad, errors="replace")
    expected = "good line\n\ufffd\ufffd va\n"
    assert "".join(replaced.iter_text()) == expected
    assert b"".join(replaced.lines().as_numpy_iterator()).decode() == expected


def test_corpus_shorter_than_a_batch_of_windows_is_a_clear_error(tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("just a few words\n" * 5)
    with pytest.raises(DataError, match=r"short\.txt.*too short.*context_length=8"):
        build_lm_data(_config(), CHARS, corpus=load_corpus(short))
    with pytest.raises(DataError, match="data_config"):
        build_lm_data({"context_length": 8}, CHARS)


# --- TFDS ---------------------------------------------------------------------

def test_tfds_source_under_mock_data(tmp_path):
    import tensorflow_datasets as tfds

    documents = [TEXT[:6000], TEXT[6000:]]  # a corpus split mid-line into two documents

    def as_dataset(self, *args, **kwargs):
        return tf.data.Dataset.from_tensor_slices({"text": documents})

    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        corpus = load_corpus("tfds:tiny_shakespeare:train", data_dir=str(tmp_path),
                             network_probe=lambda: True)
        text = b"".join(corpus.lines().as_numpy_iterator()).decode()
        # A newline is added where a document lacks one, so documents never merge.
        assert text == TEXT[:6000] + "\n" + TEXT[6000:]
        x, y = next(iter(build_lm_data(_config(), CHARS, corpus=corpus).train))
        assert x.shape == (B, T)
    with tfds.testing.mock_data(num_examples=2):  # TFDS's own random text
        corpus = load_corpus("tfds:tiny_shakespeare", data_dir=str(tmp_path),
                             network_probe=lambda: True)
        assert len(list(corpus.iter_text())) >= 2


def _forbid_downloads(monkeypatch):
    """Offline, a TFDS download retries for minutes: failing fast means never starting one."""
    import tensorflow_datasets as tfds

    def download_and_prepare(self, *args, **kwargs):
        raise AssertionError("a TFDS download was started although the network is unreachable")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", download_and_prepare)


def test_tfds_offline_fails_fast_with_advice(tmp_path, monkeypatch):
    _forbid_downloads(monkeypatch)
    with pytest.raises(DataError, match=r"tfds:tiny_shakespeare.*network.*--data PATH"):
        load_corpus("tfds:tiny_shakespeare", data_dir=str(tmp_path), network_probe=lambda: False)


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens here once the socket is closed


def test_default_network_probe_fails_fast_on_an_unreachable_address(tmp_path, monkeypatch):
    address = ("127.0.0.1", _closed_port())
    assert tfds_source.network_available(address, timeout=2) is False
    monkeypatch.setattr(tfds_source, "NETWORK_PROBE_ADDRESS", address)
    _forbid_downloads(monkeypatch)
    with pytest.raises(DataError, match="--data PATH"):
        load_corpus("tfds:tiny_shakespeare", data_dir=str(tmp_path))


def test_tfds_unknown_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="tfds:no_such_dataset_xyz"):
        load_corpus("tfds:no_such_dataset_xyz", data_dir=str(tmp_path))


# --- the language-modelling pipeline ---------------------------------------------

@pytest.fixture(scope="module")
def stream():
    return CHARS.encode(TEXT).numpy()


@pytest.mark.parametrize("streaming", [False, True])
def test_split_windows_and_static_shapes(stream, streaming):
    corpus = TextCorpus(TEXT)
    data = build_lm_data(_config(), CHARS, corpus=corpus, streaming=streaming, epochs=1)
    n = len(stream)
    n_train = int(n * 0.9)  # nanoGPT's split: the last 10% of the token stream
    assert (data.num_train_tokens, data.num_val_tokens) == (n_train, n - n_train)
    assert data.streaming is streaming
    for dataset in (data.train, data.val):
        assert [s.shape.as_list() for s in dataset.element_spec] == [[B, T], [B, T]]
        assert all(s.dtype == tf.int32 for s in dataset.element_spec)
    train_windows = {stream[i:i + T + 1].tobytes() for i in range(n_train - T)}
    train = _batches(data.train)
    assert len(train) == data.train_windows // B
    for x, y in train:
        np.testing.assert_array_equal(x[:, 1:], y[:, :-1])  # y is x shifted by one
        for row in np.concatenate([x, y[:, -1:]], axis=1):
            # Every window is T+1 consecutive tokens of the training split only.
            assert row.tobytes() in train_windows
    # Validation: the whole split, in order, in consecutive windows of stride T; the
    # tail of the last window and of the last batch has PAD inputs (never attended to by a
    # real position) and IGNORE_LABEL targets (no loss).
    val = stream[n_train:]
    assert (len(val) - 1) % T and ((len(val) - 1) // T + 1) % B  # both paddings happen here
    val_x = np.concatenate([x for x, _ in _batches(data.val)])
    val_y = np.concatenate([y for _, y in _batches(data.val)])
    assert len(val_x) == data.val_batches * B == math.ceil(math.ceil((len(val) - 1) / T) / B) * B
    targets = val_y.reshape(-1)
    np.testing.assert_array_equal(targets[targets != IGNORE_LABEL], val[1:])  # once, in order
    for k, (x, y) in enumerate(zip(val_x, val_y)):
        real = len(val[k * T + 1:k * T + T + 1])
        np.testing.assert_array_equal(x[:real], val[k * T:k * T + real])
        np.testing.assert_array_equal(y[:real], val[k * T + 1:k * T + T + 1])
        assert (y[real:] == IGNORE_LABEL).all() and (x[real + 1:] == PAD_ID).all()


def test_in_memory_epoch_visits_every_offset_once():
    # 3000 distinct characters: a token's id tells its position, so a window its offset.
    text = "".join(chr(0x4E00 + i) for i in range(3000))
    tokenizer = CharTokenizer.train(text)
    data = build_lm_data(_config(), tokenizer, corpus=TextCorpus(text), epochs=1)
    assert data.train_windows == data.num_train_tokens - T == 2700 - T
    x = np.concatenate([x for x, _ in _batches(data.train)])
    offsets = x[:, 0] - 4
    np.testing.assert_array_equal(x - 4, offsets[:, None] + np.arange(T))
    # nanoGPT's random offsets, each drawn once per epoch (a permutation), shuffled.
    assert len(offsets) == data.train_windows // B * B
    assert len(set(offsets)) == len(offsets) and set(offsets) <= set(range(data.train_windows))
    assert not np.all(np.diff(offsets) > 0)


def test_training_order_depends_only_on_the_seed():
    corpus = TextCorpus(TEXT)
    first = _batches(build_lm_data(_config(), CHARS, corpus=corpus).train, 3)
    again = _batches(build_lm_data(_config(), CHARS, corpus=corpus).train, 3)
    other = _batches(build_lm_data(_config(seed=8), CHARS, corpus=corpus).train, 3)
    np.testing.assert_array_equal(np.array(first), np.array(again))
    assert not np.array_equal(np.array(first), np.array(other))


@pytest.mark.parametrize("streaming", [False, True])
def test_resume_at_step_k_equals_the_uninterrupted_run(streaming):
    corpus = TextCorpus(TEXT)
    data = build_lm_data(_config(), CHARS, corpus=corpus, streaming=streaming)
    per_epoch = data.train_windows // B
    k, n = per_epoch - 2, 5  # resume just before an epoch boundary and run across it
    full = _batches(data.train, k + n)
    resumed = _batches(build_lm_data(_config(), CHARS, corpus=corpus, streaming=streaming,
                                     start_step=k).train, n)
    np.testing.assert_array_equal(np.array(full[k:]), np.array(resumed))


@pytest.mark.parametrize("streaming", [False, True])
def test_iterator_checkpoint_restores_the_data_position(tmp_path, streaming):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    corpus = load_corpus(path)  # TextLineDataset: the file-streaming path
    train = build_lm_data(_config(), CHARS, corpus=corpus, streaming=streaming,
                          shuffle_buffer=50).train
    iterator = iter(train)
    for _ in range(3):
        next(iterator)
    checkpoint = tf.train.Checkpoint(iterator=iterator)
    saved = checkpoint.save(str(tmp_path / "ckpt"))
    expected = [tuple(t.numpy() for t in next(iterator)) for _ in range(4)]
    fresh = iter(build_lm_data(_config(), CHARS, corpus=corpus, streaming=streaming,
                               shuffle_buffer=50).train)
    tf.train.Checkpoint(iterator=fresh).restore(saved).assert_consumed()
    got = [tuple(t.numpy() for t in next(fresh)) for _ in range(4)]
    np.testing.assert_array_equal(np.array(expected), np.array(got))


def test_distributed_dataset_splits_the_global_batch():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    train = build_lm_data(_config(), CHARS, corpus=TextCorpus(TEXT)).train
    distributed = strategy.experimental_distribute_dataset(train)
    x, y = next(iter(distributed))
    assert x.shape == (B, T) and y.shape == (B, T)


def test_other_tokenizers_feed_the_same_pipeline():
    data = build_lm_data(_config(), ByteTokenizer(), corpus=TextCorpus(TEXT + "é" * 50))
    x, y = next(iter(data.train))
    assert x.shape == (B, T) and int(tf.reduce_max(x)) < 260


# --- seq2seq ----------------------------------------------------------------------

def test_seq2seq_batches():
    BYTES = ByteTokenizer()
    pairs = [("hello there", "general kenobi"), ("a", "b"), ("long source text", "xy"),
             ("q", "a much longer target than fits")]
    dataset = make_seq2seq_dataset(pairs, BYTES, BYTES, batch_size=2, max_source_length=6,
                                   max_target_length=10)
    spec = dataset.element_spec
    assert [s.shape.as_list() for s in (*spec[0], spec[1])] == [[2, 6], [2, 10], [2, 10]]
    batches = list(dataset.as_numpy_iterator())
    assert len(batches) == 2
    (source, target_in), target_out = batches[0]
    hello = BYTES.encode("hello there").numpy()
    np.testing.assert_array_equal(source[0], hello[:6])
    b = BYTES.encode("b").numpy()
    np.testing.assert_array_equal(target_in[1], [BOS_ID, *b] + [PAD_ID] * 8)
    np.testing.assert_array_equal(target_out[1], [*b, EOS_ID] + [IGNORE_LABEL] * 8)
    np.testing.assert_array_equal(source[1], [*BYTES.encode("a").numpy()] + [PAD_ID] * 5)
    # Teacher forcing: target_out[t] == target_in[t + 1] wherever both are real tokens.
    (_, target_in), target_out = batches[1]
    np.testing.assert_array_equal(target_out[:, :-1][target_in[:, 1:] != PAD_ID],
                                  target_in[:, 1:][target_in[:, 1:] != PAD_ID])
    assert EOS_ID not in target_out[1]  # truncated target: no room for EOS
    assert BYTES.decode(target_out[1]).numpy().decode() == "a much lon"
    with pytest.raises(DataError, match="batch_size"):
        make_seq2seq_dataset(pairs, BYTES, BYTES, 0, 6, 10)
