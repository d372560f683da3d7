"""Directories that appear whole or not at all.

An export (SavedModel, Hugging Face checkpoint) is written into a fresh directory next
to its destination and moved into place with one `os.replace` when complete: a crash
leaves the destination as it was (an earlier export stays whole) and never half a new
one. Same filesystem by construction, so the move is a rename.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def staged_directory(out_dir) -> Iterator[Path]:
    """Yields an empty directory beside `out_dir`; on a clean exit it replaces `out_dir`.

    On an exception the staging directory is removed and `out_dir` is untouched. The
    caller checks beforehand whether `out_dir` may be replaced.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=out_dir.name + ".", dir=out_dir.parent))
    try:
        yield staging
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
