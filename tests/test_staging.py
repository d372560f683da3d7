"""Exports appear whole or not at all (llm_tf.staging.staged_directory)."""

import pytest

from llm_tf.staging import staged_directory


def test_a_clean_exit_replaces_the_destination_whole(tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with staged_directory(out) as staging:
        (staging / "new.txt").write_text("new")
        assert not (out / "new.txt").exists()  # nothing visible before the end
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no staging left


def test_a_crash_leaves_the_destination_as_it_was(tmp_path):
    out = tmp_path / "nested" / "export"
    with pytest.raises(RuntimeError, match="crash"):
        with staged_directory(out) as staging:
            (staging / "half.txt").write_text("half")
            raise RuntimeError("crash")
    assert not out.exists()
    assert list(out.parent.iterdir()) == []
