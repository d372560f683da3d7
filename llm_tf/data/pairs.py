"""Sentence pairs: `source<TAB>target` lines from a file, a directory or a glob.

    Ich habe Hunger.<TAB>I am hungry.

One pair a line, UTF-8, CRLF read as LF, blank lines skipped. Anything else is refused with
a `DataError` naming the file and the line (commands print it as one line, exit code 2):
a line without a tab (a plain text file given as pairs, say), a line with more than one
tab, a side that is empty or only whitespace, bytes that are not UTF-8, and a set with
fewer pairs than its use needs (training needs two: one is held out for validation).

Pairs are held in memory as Python strings: a translation corpus of this project's size
(the de-en set is 20k pairs, 2 MB) costs a few megabytes; a corpus of many millions of
pairs would want a streaming reader instead.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Sequence

import numpy as np

from llm_tf.data.corpora import resolve_files
from llm_tf.data.corpus import DataError

SEPARATOR = "\t"
# What a line must look like, said the same way by every error.
FORMAT = "one 'source<TAB>target' pair a line"


@dataclasses.dataclass(frozen=True)
class SentencePairs:
    """Parallel sentences, in file order.

    Attributes:
        sources, targets: the two sides, equally long tuples of non-empty strings.
        origin: where they were read from (for messages).
    """

    sources: tuple
    targets: tuple
    origin: str = "<pairs>"

    def __post_init__(self):
        if len(self.sources) != len(self.targets):
            raise DataError(f"{len(self.sources)} sources but {len(self.targets)} targets.")

    @classmethod
    def from_list(cls, pairs: Sequence[tuple[str, str]], origin: str = "<pairs>"):
        """From (source, target) tuples, checked like the lines of a file."""
        sources, targets = [], []
        for number, pair in enumerate(pairs, 1):
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2
                    and all(isinstance(s, str) for s in pair)):
                raise DataError(f"{origin}: pair {number} is not a (source, target) pair of "
                                f"strings. Received: {pair!r}")
            source, target = _check_sides(pair[0], pair[1], f"{origin}: pair {number}")
            sources.append(source)
            targets.append(target)
        return cls(tuple(sources), tuple(targets), origin)

    def __len__(self) -> int:
        return len(self.sources)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(zip(self.sources, self.targets))

    def subset(self, indices) -> "SentencePairs":
        indices = [int(i) for i in indices]
        return SentencePairs(tuple(self.sources[i] for i in indices),
                             tuple(self.targets[i] for i in indices), self.origin)

    def texts(self) -> Iterator[str]:
        """Every sentence of both sides, one per line: what a shared tokenizer learns from."""
        for source, target in self:
            yield source + "\n" + target + "\n"


def _check_sides(source: str, target: str, where: str) -> tuple[str, str]:
    for side, text in (("source (before the tab)", source), ("target (after the tab)", target)):
        if not text.strip():
            raise DataError(f"{where}: the {side} is empty; expected {FORMAT}.")
    return source, target


def read_pairs_file(path: str) -> tuple[list[str], list[str]]:
    """The (sources, targets) of one file, with errors naming the file and the line."""
    sources, targets = [], []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise DataError(f"{path!r} line {number} is not valid UTF-8; expected "
                                f"{FORMAT}.") from None
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip():
                continue
            tabs = line.count(SEPARATOR)
            if tabs != 1:
                what = "has no tab" if tabs == 0 else f"has {tabs} tabs"
                raise DataError(f"{path!r} line {number} {what}: {line[:60]!r}; expected "
                                f"{FORMAT}.")
            source, target = _check_sides(*line.split(SEPARATOR), f"{path!r} line {number}")
            sources.append(source)
            targets.append(target)
    return sources, targets


def load_pairs(source: str, minimum: int = 1, role: str = "sentence pairs") -> SentencePairs:
    """The pairs in `source` (a file, a directory of files or a glob), in order.

    Args:
        source: where the `source<TAB>target` lines are.
        minimum: fewest pairs accepted (a `DataError` naming `role` otherwise).
        role: what the pairs are for, in messages ("training pairs", "test pairs").
    """
    if not isinstance(source, str) or not source:
        raise DataError(f"The {role} need a path. Received: {source!r}")
    sources, targets = [], []
    for path in resolve_files(source):
        more_sources, more_targets = read_pairs_file(path)
        sources += more_sources
        targets += more_targets
    if len(sources) < minimum:
        raise DataError(f"The {role} in {source!r} hold {len(sources)} pair(s); at least "
                        f"{minimum} are needed ({FORMAT}).")
    return SentencePairs(tuple(sources), tuple(targets), source)


def split_pairs(pairs: SentencePairs, val_fraction: float,
                seed: int) -> tuple[SentencePairs, SentencePairs]:
    """(training, validation): a seeded random `val_fraction` of the pairs held out (at
    least one; at least one left to train on). Each keeps its pairs in file order."""
    n = len(pairs)
    if n < 2:
        raise DataError(f"The training pairs in {pairs.origin!r} hold {n} pair(s); at least 2 "
                        "are needed (one is held out for validation), or give --eval-data.")
    n_val = min(n - 1, max(1, round(n * val_fraction)))
    held_out = np.random.default_rng([seed, n]).permutation(n)[:n_val]
    is_val = np.zeros(n, bool)
    is_val[held_out] = True
    return pairs.subset(np.flatnonzero(~is_val)), pairs.subset(np.flatnonzero(is_val))
