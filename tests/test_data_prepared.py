"""Specifications of prepared directories (`llm-tf prepare`, llm_tf/data/prepared.py)."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from llm_tf import DataConfig
from llm_tf.data import (
    DataError,
    PreparedCorpus,
    TextCorpus,
    build_lm_data,
    open_data,
    prepare,
    stride_windows,
)
from llm_tf.tokenizers import CharTokenizer

T, B = 8, 4


def _text(n_lines, seed=0):
    rng = np.random.default_rng(seed)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota"]
    return "".join(" ".join(rng.choice(words, size=rng.integers(3, 9))) + f" {i}\n"
                   for i in range(n_lines))


TEXT = _text(300)
CHARS = CharTokenizer.train(TEXT)
CONFIG = DataConfig(source="unused", context_length=T, batch_size=B, val_fraction=0.1, seed=7)


def _prepared(tmp_path, shards=1, name="prepared"):
    out = str(tmp_path / name)
    prepare(TextCorpus(TEXT), CHARS, out, shards=shards, lines_per_batch=16)
    return out


def _take(dataset, n):
    return [(x.numpy(), y.numpy()) for x, y in dataset.take(n)]


def test_the_shards_hold_the_token_stream_and_the_split(tmp_path):
    corpus = PreparedCorpus(_prepared(tmp_path, shards=3))
    ids = CHARS.encode([TEXT]).flat_values.numpy()
    n_train = int(len(ids) * 0.9)
    train = np.concatenate(list(corpus.split_chunks("train").as_numpy_iterator()))
    val = np.concatenate(list(corpus.split_chunks("val").as_numpy_iterator()))
    np.testing.assert_array_equal(train, ids[:n_train])
    np.testing.assert_array_equal(val, ids[n_train:])
    assert len(corpus.manifest.train) >= 3
    corpus.verify()


def test_one_shard_gives_the_streamed_batches_for_the_same_seed(tmp_path):
    corpus = PreparedCorpus(_prepared(tmp_path))
    tf.random.set_seed(3)
    streamed = build_lm_data(CONFIG, CHARS, corpus=TextCorpus(TEXT), streaming=True)
    expected_train, expected_val = _take(streamed.train, 700), _take(streamed.val, 1000)
    tf.random.set_seed(3)
    prepared = corpus.lm_data(CONFIG)
    assert (prepared.num_train_tokens, prepared.num_val_tokens, prepared.val_batches) == (
        streamed.num_train_tokens, streamed.num_val_tokens, streamed.val_batches)
    got_train, got_val = _take(prepared.train, 700), _take(prepared.val, 1000)
    assert 700 * B > streamed.train_windows  # past an epoch: reshuffled alike
    for (x1, y1), (x2, y2) in zip(expected_train + expected_val, got_train + got_val):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    assert len(got_val) == len(expected_val) == streamed.val_batches


def test_exact_resume_from_prepared_data(tmp_path):
    corpus = PreparedCorpus(_prepared(tmp_path, shards=3))
    tf.random.set_seed(5)
    whole = _take(corpus.train_batches(CONFIG), 400)  # crosses epochs of 3 shards
    for start in (1, 137, 333):
        tf.random.set_seed(5)
        resumed = _take(corpus.train_batches(CONFIG, start_step=start), 400 - start)
        for (x1, y1), (x2, y2) in zip(whole[start:], resumed):
            np.testing.assert_array_equal(x1, x2)
            np.testing.assert_array_equal(y1, y2)


def _window_set(dataset):
    return {tuple(x.tolist()) + (int(y[-1]),) for x, y in dataset.as_numpy_iterator()}


def test_two_workers_read_disjoint_shards(tmp_path):
    # Random characters: every window of T + 1 is distinct, so windows identify positions.
    rng = np.random.default_rng(0)
    letters = rng.choice(list("abcdefghijklmnopqrstuvwxyz"), size=(250, 47))
    text = "".join("".join(row) + "\n" for row in letters)
    out = str(tmp_path / "random")
    prepare(TextCorpus(text), CharTokenizer.train(text), out, shards=4, lines_per_batch=16)
    corpus = PreparedCorpus(out)
    contexts = [tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=i,
                                           num_replicas_in_sync=2) for i in range(2)]
    first, second = (_window_set(corpus.train_windows(T, 7, c)) for c in contexts)
    everything = _window_set(corpus.train_windows(T, 7))
    assert len(everything) == sum(max(0, (s.tokens - 1) // T) for s in corpus.manifest.train)
    assert first and second and not first & second
    assert first | second == everything
    # Each reads whole shards: its windows are those of its shards alone.
    shards = [_window_set(stride_windows(corpus._shard_chunks(corpus.shard_path(s), s.tokens), T))
              for s in corpus.manifest.train]
    for mine in (first, second):
        assert mine == set().union(*[s for s in shards if s <= mine])
    with pytest.raises(DataError, match="fewer than"):
        corpus.train_windows(T, 7, tf.distribute.InputContext(num_input_pipelines=8))


def test_ram_filesystem_round_trip(tmp_path):
    out = "ram://llm_tf_test/prepared"
    prepare(TextCorpus(TEXT), CHARS, out, shards=2, lines_per_batch=16)
    remote, local = PreparedCorpus(out), PreparedCorpus(_prepared(tmp_path, shards=2))
    assert remote.manifest.to_dict()["shards"] == local.manifest.to_dict()["shards"]
    assert remote.load_tokenizer().chars == CHARS.chars
    remote.verify()
    tf.random.set_seed(1)
    a = _take(remote.lm_data(CONFIG).train, 20)
    tf.random.set_seed(1)
    b = _take(local.lm_data(CONFIG).train, 20)
    for (x1, _), (x2, _) in zip(a, b):
        np.testing.assert_array_equal(x1, x2)
    assert isinstance(open_data(out), PreparedCorpus)


def test_bad_directories_are_named(tmp_path):
    with pytest.raises(DataError, match="no manifest.json"):
        PreparedCorpus(str(tmp_path))
    out = _prepared(tmp_path, shards=2)
    os.remove(os.path.join(out, "manifest.json"))
    with pytest.raises(DataError, match="not a prepared directory"):
        open_data(out)
    out = _prepared(tmp_path, shards=2, name="again")
    with open(os.path.join(out, "train-00001.bin"), "r+b") as f:
        f.truncate(10)
    with pytest.raises(DataError, match="train-00001.bin.*truncated"):
        PreparedCorpus(out)
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump({"format": "something else"}, f)
    with pytest.raises(DataError, match="not a valid llm_tf manifest"):
        PreparedCorpus(out)
    with pytest.raises(DataError, match="not empty"):
        prepare(TextCorpus(TEXT), CHARS, out)
    other = CharTokenizer.train("abc")
    corpus = PreparedCorpus(_prepared(tmp_path, name="third"))
    corpus.check_tokenizer(CHARS, "this one")
    with pytest.raises(DataError, match="another tokenizer"):
        corpus.check_tokenizer(other, "--tokenizer-from")
