"""Labelled texts for a classifier: `label<TAB>text` lines -> token ids (N, T), class ids (N,).

**Labels.** The class names are learned from the training file: its distinct labels,
sorted, class id = position (so the same file always gives the same ids). A file with one
class only cannot train a classifier; an evaluation file whose label the training file
never had cannot be scored. Both are `DataError`s naming the file and line.

**Length.** A text longer than the model's context keeps its *first* T tokens: a mail's
subject and opening lines are at the start (and so is the lead of most documents), while
its end is signatures, footers and mailing-list boilerplate. Shorter texts are
right-padded with PAD (`TransformerClassifier` pools over the real tokens only).
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from llm_tf.data.corpus import DataError
from llm_tf.data.tsv import read_pairs

ENCODE_CHUNK = 1024  # texts per tokenizer call


@dataclasses.dataclass(frozen=True)
class LabelledTexts:
    """Texts and their classes.

    Attributes:
        texts: the N texts.
        labels: int32 (N,), class ids: positions in `names`.
        names: the C class names.
        source: the file they came from.
    """

    texts: tuple
    labels: np.ndarray
    names: tuple
    source: str

    def __len__(self) -> int:
        return len(self.texts)

    def counts(self) -> np.ndarray:
        """Examples per class, int (C,)."""
        return np.bincount(self.labels, minlength=len(self.names))

    def majority(self) -> float:
        """The share of the most frequent class: the accuracy of always answering it."""
        return float(self.counts().max() / len(self))

    def describe(self) -> str:
        """'ham 3,472 / spam 1,574, majority 68.8%'."""
        classes = " / ".join(f"{name} {count:,}" for name, count in zip(self.names,
                                                                         self.counts()))
        return f"{classes}, majority {100 * self.majority():.1f}%"

    def subset(self, indices) -> "LabelledTexts":
        indices = np.asarray(indices)
        return LabelledTexts(tuple(self.texts[i] for i in indices), self.labels[indices],
                             self.names, self.source)


def read_labelled_texts(path, names: Optional[Sequence[str]] = None) -> LabelledTexts:
    """The `label<TAB>text` lines of `path` (see `llm_tf.data.tsv.read_pairs`).

    Args:
        path: the file.
        names: the class names of a trained (or training) classifier; None learns them from
            this file (sorted distinct labels; at least two).

    Raises:
        DataError: bad lines (`read_pairs`), one class only, or a label not in `names`.
    """
    pairs = read_pairs(path, "label", "text")
    if names is None:
        names = tuple(sorted({p.first for p in pairs}))
        if len(names) < 2:
            raise DataError(f"{path}: every line has the label {names[0]!r}: a classifier "
                            "needs examples of at least two classes.")
    names = tuple(names)
    index = {name: i for i, name in enumerate(names)}
    for pair in pairs:
        if pair.first not in index:
            raise DataError(f"{path}:{pair.line}: label {pair.first!r} was not seen in "
                            f"training (the classes are {', '.join(names)}).")
    return LabelledTexts(texts=tuple(p.second for p in pairs),
                         labels=np.array([index[p.first] for p in pairs], np.int32),
                         names=names, source=str(path))


def encode_texts(tokenizer, texts: Sequence[str], length: int,
                 pad_id: Optional[int] = None) -> tuple[np.ndarray, int]:
    """Texts -> (int32 (N, T) ids, their first T tokens right-padded with PAD; how many texts
    were longer than T and were cut)."""
    pad_id = tokenizer.pad_id if pad_id is None else pad_id
    rows, cut = [], 0
    for start in range(0, len(texts), ENCODE_CHUNK):
        ids = tokenizer.encode(tf.constant(list(texts[start:start + ENCODE_CHUNK])))  # (n, (k))
        cut += int(tf.reduce_sum(tf.cast(ids.row_lengths() > length, tf.int32)))
        rows.append(ids[:, :length].to_tensor(pad_id, shape=[None, length]).numpy())
    return np.concatenate(rows).astype(np.int32), cut
