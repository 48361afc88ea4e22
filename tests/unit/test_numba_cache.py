"""A read-only NUMBA_CACHE_DIR is read through links under the temporary directory; a writable one is left alone."""

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


def test_the_links_lead_to_every_file_of_the_cache(tmp_path, monkeypatch):
    source = tmp_path / "image-cache"
    (source / "algorithm_0d68").mkdir(parents=True)
    (source / "algorithm_0d68" / "kernel.nbi").write_bytes(b"index")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(source))
    monkeypatch.setattr(numba_cache, "_writable", lambda directory: False)  # root may write anywhere
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    overlay = numba_cache.writable_cache()
    assert overlay is not None
    link = overlay / "algorithm_0d68" / "kernel.nbi"
    assert link.is_symlink() and link.read_bytes() == b"index"
    replacement = link.with_suffix(".tmp")
    replacement.write_bytes(b"new index")  # numba's save: a new file renamed over the old one
    replacement.replace(link)
    assert (source / "algorithm_0d68" / "kernel.nbi").read_bytes() == b"index"
