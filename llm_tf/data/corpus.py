"""What every corpus is: text that can be streamed as TF lines or as Python strings.

The kinds of corpus (`llm_tf.data.corpora`, `llm_tf.data.tfds_source`) build on this,
and so does the error every data problem raises.
"""

from __future__ import annotations

from typing import Iterator, Optional

import tensorflow as tf

# The name of the built-in corpus (CPython's bundled documentation).
BUILTIN = "builtin"
# What marks a directory made by `llm-tf prepare` (`llm_tf.data.prepared`), here so that the
# text readers can refuse one without importing it.
MANIFEST_FILE = "manifest.json"


class DataError(ValueError):
    """A corpus or data setting is unusable; the message names the file or argument."""


class DataFileNotFoundError(DataError, FileNotFoundError):
    """A corpus path does not exist (both a `DataError` and a `FileNotFoundError`)."""


class Corpus:
    """Text that can be streamed, as TF lines or as Python strings.

    Attributes:
        source: the source string it was loaded from (for messages and configs).
        lines_per_batch: lines (or documents) per element of `line_batches()`,
            i.e. per tokenizer call (large for lines, small for whole documents).
    """

    source: str = ""
    lines_per_batch: int = 1024

    def line_batches(self, batch_size: Optional[int] = None) -> tf.data.Dataset:
        """(n,) `tf.string` elements of up to `batch_size` (default `lines_per_batch`)
        lines (or documents), each ending in "\\n", in corpus order.

        Work is done per batch, never per line: a tf.data function call per
        element costs tens of microseconds, more than tokenizing a line.
        """
        raise NotImplementedError

    def lines(self) -> tf.data.Dataset:
        """Scalar `tf.string` elements, each one line (or document) ending in "\\n"."""
        return self.line_batches().unbatch()

    def iter_text(self) -> Iterator[str]:
        """Python strings (chunks of whole lines), in corpus order."""
        raise NotImplementedError

    def validate(self) -> None:
        """Raises a `DataError` naming the culprit if the text cannot be read."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source!r})"
