"""Tab-separated example files: one example a line, two fields, errors that name the line.

    ham<TAB>Re: [ILUG] Looking for a file ...        label<TAB>text       (classification)
    reverse: abc<TAB>cba                             prompt<TAB>response  (instruction tuning)

A line is split at its *first* tab: the second field may itself hold tabs. Line ends
(LF or CRLF) are not part of the fields; blank lines are skipped; a byte-order mark at the
start of the file is dropped. Every problem is a `DataError` naming the file and the line:
a missing tab, an empty field, text that is not UTF-8.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from llm_tf.data.corpus import DataError, DataFileNotFoundError


class Pair(NamedTuple):
    line: int     # 1-based line number in the file
    first: str    # before the first tab (stripped of surrounding spaces)
    second: str   # after it


def read_pairs(path, first: str, second: str) -> list[Pair]:
    """The examples of the file at `path`, as `Pair`s in file order.

    Args:
        path: a UTF-8 text file.
        first, second: what the two fields are ("label", "text"), for error messages.

    Raises:
        DataFileNotFoundError: no such file.
        DataError: a line without a tab, with an empty field, invalid UTF-8, or no example.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        what = "a directory, not a file" if os.path.isdir(path) else "not found"
        raise DataFileNotFoundError(f"{path!r} is {what}: expected a file of "
                                    f"{first}<TAB>{second} lines.")
    pairs = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise DataError(f"{path}:{number}: not valid UTF-8 (byte {error.start}).") \
                    from None
            if number == 1:
                line = line.removeprefix("\ufeff")
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            head, tab, tail = line.partition("\t")
            if not tab:
                raise DataError(f"{path}:{number}: no tab: expected {first}<TAB>{second}. "
                                f"Received: {_clip(line)!r}")
            head = head.strip()
            if not head:
                raise DataError(f"{path}:{number}: empty {first} (before the tab).")
            if not tail.strip():
                raise DataError(f"{path}:{number}: empty {second} (after the tab).")
            pairs.append(Pair(number, head, tail))
    if not pairs:
        raise DataError(f"{path!r} holds no {first}<TAB>{second} line.")
    return pairs


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
