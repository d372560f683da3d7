"""Corpora by name or path, streamed as lines.

`load_corpus(source)` understands three kinds of source:

* ``"builtin"`` — the English reference documentation that ships inside
  CPython (`pydoc_data.topics`, ~465 KB): works offline on any machine with
  Python, so every example and test has real English text to train on.
* a path — a UTF-8 text file, a directory (every non-hidden file under it,
  recursively, in sorted order) or a glob such as ``"books/**/*.txt"``.
  Files are streamed line by line with `tf.data.TextLineDataset`; a multi-GB
  corpus is never one Python string.
* ``"tfds:NAME[:SPLIT]"`` — any TFDS dataset with a text feature, e.g.
  ``"tfds:tiny_shakespeare"``. Without a split, all splits are concatenated
  (train, validation, test first), which for tiny Shakespeare is the whole
  play text in its original order.

Every corpus yields newline-terminated lines (or documents), so character- and
byte-level tokenizers see the text exactly as written, line ends included;
CRLF line ends are read as LF. TFDS documents that do not end in a newline get
one, so documents never run into each other (for tiny Shakespeare this adds
two newlines, at the split boundaries, to 1,115,394 characters).

UTF-8 policy: ``errors="strict"`` (default) refuses a file that is not valid
UTF-8 with a `DataError` naming the file, the line and the byte offset;
``errors="replace"`` decodes invalid bytes as U+FFFD instead.
"""

from __future__ import annotations

import codecs
import glob as globlib
import os
from typing import Callable, Optional, Sequence

import tensorflow as tf

from llm_tf.data.corpus import (
    BUILTIN,
    MANIFEST_FILE,
    Corpus,
    DataError,
    DataFileNotFoundError,
)
from llm_tf.data.tfds_source import load_tfds

TFDS_PREFIX = "tfds:"
ERROR_POLICIES = ("strict", "replace")
_READ_BLOCK = 1 << 22  # 4 MiB: bounded memory when validating or reading big files


class TextCorpus(Corpus):
    """A corpus held in memory as one Python string (the built-in corpus, tests)."""

    def __init__(self, text: str, source: str = "<text>"):
        if not isinstance(text, str):
            raise DataError(f"TextCorpus needs a str. Received: {type(text).__name__}")
        if not text:
            raise DataError(f"The corpus {source!r} is empty.")
        self.text, self.source = text, source

    def line_batches(self, batch_size=None):
        lines = tf.data.Dataset.from_tensor_slices(self.text.splitlines(keepends=True))
        return lines.batch(batch_size or self.lines_per_batch)

    def iter_text(self):
        yield self.text


def builtin_text() -> str:
    """CPython's `pydoc_data.topics`: the language reference topics, sorted by name.

    `help("if")` shows these; they are the Python documentation (PSF License),
    ~465 KB of English prose and code, present wherever Python is.
    """
    from pydoc_data import topics
    return "".join(topics.topics[name] for name in sorted(topics.topics))


class FileCorpus(Corpus):
    """UTF-8 text files, streamed line by line in the order given."""

    def __init__(self, files: Sequence[str], source: str, errors: str = "strict"):
        self.files, self.source, self.errors = list(files), source, errors
        self._validated = errors == "replace"

    def line_batches(self, batch_size=None):
        lines = tf.data.TextLineDataset(self.files)  # strips "\n" (and a "\r" before it)
        replace = self.errors == "replace"

        def finish(batch):  # (n,) -> (n,)
            if replace:
                batch = tf.strings.unicode_transcode(batch, "UTF-8", "UTF-8", errors="replace")
            return batch + "\n"

        return lines.batch(batch_size or self.lines_per_batch).map(finish)

    def iter_text(self):
        for path in self.files:
            with open(path, encoding="utf-8", errors=self.errors, newline=None) as f:
                try:
                    while True:
                        chunk = f.read(_READ_BLOCK) + f.readline()  # end on a line boundary
                        if not chunk:
                            break
                        yield chunk
                except UnicodeDecodeError:
                    self._raise_invalid_utf8(path)

    def validate(self):
        """Checks every file is UTF-8, in 4 MiB blocks (about 1 s per GB)."""
        if self._validated:
            return
        for path in self.files:
            decoder = codecs.getincrementaldecoder("utf-8")("strict")
            with open(path, "rb") as f:
                try:
                    while block := f.read(_READ_BLOCK):
                        decoder.decode(block)
                    decoder.decode(b"", final=True)
                except UnicodeDecodeError:
                    self._raise_invalid_utf8(path)
        self._validated = True

    @staticmethod
    def _raise_invalid_utf8(path: str):
        # Find the first bad byte again, so the message can say where it is.
        offset, line = 0, 1
        decoder = codecs.getincrementaldecoder("utf-8")("strict")
        with open(path, "rb") as f:
            while block := f.read(_READ_BLOCK):
                try:
                    decoder.decode(block)
                except UnicodeDecodeError as e:
                    start = max(0, e.start)
                    prefix = block[:start]
                    offset += start
                    line += prefix.count(b"\n")
                    break
                offset += len(block)
                line += block.count(b"\n")
        raise DataError(
            f"{path!r} is not valid UTF-8 (first bad byte at offset {offset}, line {line}). "
            "Convert it to UTF-8, or pass errors='replace' to read invalid bytes as U+FFFD."
        ) from None


def resolve_files(source: str) -> list[str]:
    """The non-empty files a path, directory or glob names (sorted), with clear errors
    (`DataError`s naming `source`). Sentence-pair files (`llm_tf.data.pairs`) use it too."""
    path = os.path.expanduser(source)
    if any(ch in path for ch in "*?["):
        files = sorted(p for p in globlib.glob(path, recursive=True) if os.path.isfile(p))
        if not files:
            raise DataFileNotFoundError(f"The glob `source`={source!r} matches no files.")
    elif os.path.isdir(path):
        files = []
        for root, dirs, names in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            files += [os.path.join(root, n) for n in sorted(names) if not n.startswith(".")]
        if not files:
            raise DataError(f"The directory `source`={source!r} holds no files.")
    elif os.path.isfile(path):
        files = [path]
        if os.path.getsize(path) == 0:
            raise DataError(f"The corpus file {source!r} is empty.")
    else:
        raise DataFileNotFoundError(
            f"No such file or directory: `source`={source!r}. Give a UTF-8 text file, a "
            f"directory or a glob of them, {BUILTIN!r}, or 'tfds:NAME[:SPLIT]'.")
    for file in files:  # a prepared directory's binary shards would read as garbled text
        parent = os.path.dirname(file)
        if file.endswith(".bin") and os.path.isfile(os.path.join(parent, MANIFEST_FILE)):
            raise DataError(
                f"`source`={source!r} reads the prepared directory {parent!r} (made by `llm-tf "
                "prepare`): its shards are token ids, not text. Pass that directory itself to "
                "`llm-tf train --data` or `llm-tf evaluate --data`, or give the text it was "
                "made from.")
    non_empty = [f for f in files if os.path.getsize(f) > 0]
    if not non_empty:
        raise DataError(f"Every file of `source`={source!r} is empty: {files[:5]}")
    return non_empty  # empty files among others add nothing, so they are skipped


# --- the entry point ----------------------------------------------------------

def load_corpus(source: str | os.PathLike = BUILTIN, *, errors: str = "strict",
                data_dir: Optional[str] = None,
                network_probe: Optional[Callable[[], bool]] = None,
                text_feature: Optional[str] = None) -> Corpus:
    """The corpus named by `source` (see the module docstring for the forms).

    Args:
        source: "builtin", a file/directory/glob of UTF-8 text, or "tfds:NAME[:SPLIT]".
        errors: "strict" (invalid UTF-8 is an error naming the file) or
            "replace" (invalid bytes read as U+FFFD).
        data_dir: TFDS data directory (default: TFDS's, ~/tensorflow_datasets).
        network_probe: returns whether a TFDS download could succeed; called
            only when the dataset is not prepared. Default:
            `llm_tf.data.tfds_source.network_available`.
        text_feature: which TFDS feature holds the text (default: "text", or
            the only text feature).

    Raises:
        DataError: (a `ValueError`) naming the file or argument at fault.
    """
    if errors not in ERROR_POLICIES:
        raise DataError(f"`errors` must be one of {ERROR_POLICIES}. Received: errors={errors!r}")
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if not isinstance(source, str) or not source:
        raise DataError(f"`source` must be a non-empty string. Received: source={source!r}")
    if source == BUILTIN:
        return TextCorpus(builtin_text(), source=BUILTIN)
    if source.startswith(TFDS_PREFIX):
        return load_tfds(source[len(TFDS_PREFIX):], source, errors, data_dir,
                                     network_probe, text_feature)
    return FileCorpus(resolve_files(source), source=source, errors=errors)
