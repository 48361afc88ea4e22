"""A read-only NUMBA_CACHE_DIR is read from a copy under the temporary directory; a writable one is left alone."""

from pathlib import Path

import pytest

from container import numba_cache


def test_a_writable_cache_is_used_in_place(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "cache"))
    assert numba_cache.writable_cache() == tmp_path / "cache"
    assert (tmp_path / "cache").is_dir()


def test_a_cache_that_cannot_be_written_is_copied_under_the_temporary_directory(tmp_path, monkeypatch):
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache's parent should be: nothing can be created under it")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(blocked / "cache"))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr("tempfile.tempdir", None)  # TMPDIR is read once per process
    copy = numba_cache.writable_cache()
    assert copy is not None and copy.parent == tmp_path / "tmp" and copy.name.startswith("numba-cache-")
    assert Path(numba_cache.os.environ["NUMBA_CACHE_DIR"]) == copy


def test_no_writable_directory_at_all_is_a_clear_error(tmp_path, monkeypatch):
    blocked = tmp_path / "file"
    blocked.write_text("")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(blocked / "cache"))
    monkeypatch.setattr("tempfile.tempdir", str(blocked / "tmp"))
    with pytest.raises(numba_cache.CacheDirError, match=r"read-only and the temporary directory .* cannot be "
                                                        r"written .*--tmpfs /tmp"):
        numba_cache.writable_cache()


def test_unset_leaves_the_choice_to_numba(monkeypatch):
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    assert numba_cache.writable_cache() is None
