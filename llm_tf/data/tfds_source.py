"""TFDS datasets as corpora, failing fast when they would need a download without network.

A plain `tfds.load` of a dataset that is not prepared yet starts a download,
and offline the download retries for minutes (about 200 s seen here). So
before downloading, `load_tfds` asks `network_probe()` (default: can a TCP
connection to TFDS's storage open within 3 s?) and, if not, raises a
`DataError` that says why and suggests local text (`--data PATH`). A dataset
already in the TFDS data directory loads without any network.
"""

from __future__ import annotations

import socket
from typing import Callable, Optional

import tensorflow as tf

from llm_tf.data.corpus import BUILTIN, Corpus, DataError

# Host and port that a TFDS download would need (TFDS's own storage bucket).
NETWORK_PROBE_ADDRESS = ("storage.googleapis.com", 443)
NETWORK_PROBE_TIMEOUT = 3.0


def network_available(address: Optional[tuple[str, int]] = None,
                      timeout: Optional[float] = None) -> bool:
    """True if a TCP connection to `address` opens within `timeout` seconds.

    Defaults: `NETWORK_PROBE_ADDRESS` and `NETWORK_PROBE_TIMEOUT`, read at call
    time so that they can be changed (or patched in tests).
    """
    address = NETWORK_PROBE_ADDRESS if address is None else address
    timeout = NETWORK_PROBE_TIMEOUT if timeout is None else timeout
    try:
        with socket.create_connection(address, timeout=timeout):
            return True
    except OSError:
        return False


class TfdsCorpus(Corpus):
    """The text feature of a TFDS dataset, one document per element."""

    lines_per_batch = 16

    def __init__(self, dataset: tf.data.Dataset, feature: str, source: str,
                 errors: str = "strict"):
        self.dataset, self.feature, self.source, self.errors = dataset, feature, source, errors

    def line_batches(self, batch_size=None):
        feature = self.feature

        def document(example):
            text = example[feature]
            if self.errors == "replace":
                text = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace")
            ends_with_newline = tf.strings.substr(text, -1, 1) == "\n"
            return tf.where(ends_with_newline | (tf.strings.length(text) == 0), text, text + "\n")

        return self.dataset.map(document).batch(batch_size or self.lines_per_batch)

    def iter_text(self):
        for i, value in enumerate(self.lines().as_numpy_iterator()):
            try:
                yield value.decode("utf-8", errors=self.errors)
            except UnicodeDecodeError as e:
                raise DataError(f"Document {i} of {self.source!r} is not valid UTF-8 ({e}). "
                                "Pass errors='replace' to read invalid bytes as U+FFFD.") from None


def load_tfds(spec: str, source: str, errors: str = "strict", data_dir: Optional[str] = None,
              network_probe: Optional[Callable[[], bool]] = None,
              text_feature: Optional[str] = None) -> TfdsCorpus:
    """The corpus of `spec` = "NAME[:SPLIT]" (`source` is the full string, for messages)."""
    network_probe = network_probe or network_available
    name, _, split = spec.partition(":")
    if not name:
        raise DataError(f"`source`={source!r} names no dataset; write 'tfds:NAME[:SPLIT]', "
                        "e.g. 'tfds:tiny_shakespeare'.")
    import tensorflow_datasets as tfds
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # DatasetNotFoundError and friends: say which source, briefly
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"TFDS cannot find the dataset of `source`={source!r}: {first_line}"
                        ) from None
    if not builder.is_prepared():
        # A plain tfds.load retries a download for minutes when offline; ask first.
        if not network_probe():
            raise DataError(
                f"`source`={source!r}: the dataset is not in the TFDS data directory "
                f"({builder.data_dir}) and the network is unreachable, so it cannot be "
                "downloaded. Use local text instead (--data PATH, a file, directory or glob), "
                f"{BUILTIN!r}, or prepare the dataset on a machine with internet access.")
        builder.download_and_prepare()
    features = builder.info.features
    text_features = [k for k, v in features.items() if _is_text_feature(v)]
    if text_feature is None:
        if not text_features:
            raise DataError(f"`source`={source!r} has no text feature; features: {list(features)}")
        text_feature = "text" if "text" in text_features else text_features[0]
        if len(text_features) > 1 and text_feature != "text":
            raise DataError(f"`source`={source!r} has several text features {text_features}; "
                            "pass `text_feature=` to choose one.")
    elif text_feature not in features:
        raise DataError(f"`text_feature`={text_feature!r} is not a feature of {source!r}; "
                        f"features: {list(features)}")
    if not split:
        known = list(builder.info.splits)
        order = [s for s in ("train", "validation", "test") if s in known]
        order += sorted(s for s in known if s not in order)
        split = "+".join(order) or "train"
    try:
        dataset = builder.as_dataset(split=split, shuffle_files=False)
    except Exception as e:
        raise DataError(f"`source`={source!r}: cannot read split {split!r} "
                        f"(splits: {list(builder.info.splits)}): {e}") from None
    return TfdsCorpus(dataset, text_feature, source, errors)


def _is_text_feature(feature) -> bool:
    import tensorflow_datasets as tfds
    if isinstance(feature, tfds.features.Text):
        return True
    return isinstance(feature, tfds.features.Tensor) and feature.dtype == tf.string \
        and feature.shape == ()
