"""Every malformed artifact of the table fails ``artifact.load`` with one line naming the file at fault and what
is wrong with it (an ``ArtifactError``, nothing else)."""

import gzip
import tarfile
from pathlib import Path

import numpy as np
import pytest

from algorithm import artifact
from tests.corrupt_artifacts import CORRUPTIONS, Corruption, fm_model


@pytest.mark.parametrize("corruption", CORRUPTIONS, ids=[c.name for c in CORRUPTIONS])
def test_a_malformed_artifact_names_the_file_and_the_fault(tmp_path: Path, corruption: Corruption) -> None:
    corruption.write(tmp_path)
    if corruption.state_only:
        artifact.load(tmp_path)  # serving never reads the optimizer state
    with pytest.raises(artifact.ArtifactError) as caught:
        artifact.load(tmp_path, optimizer_state=True)
    message = str(caught.value)
    assert "\n" not in message and corruption.file in message and corruption.says in message, message


def test_members_past_the_memory_budget_are_refused_by_their_stated_size(tmp_path: Path) -> None:
    CORRUPTIONS[0].write(tmp_path / "plain")  # any model: the budget is checked before anything is parsed
    with pytest.raises(artifact.ArtifactError, match=r"model\.json [\d,]+, model\.npz [\d,]+ bytes\) are more than "
                                                     r"the 100 bytes of memory"):
        artifact.load(tmp_path / "plain", max_bytes=100)


def test_a_tarball_member_is_refused_by_the_size_its_header_states_before_it_is_read(tmp_path: Path) -> None:
    header = tarfile.TarInfo(artifact.ARRAYS_FILE)
    header.size = 4 << 30  # 4 GiB of zeros would compress to 4 MB; the header alone is enough to refuse it
    (tmp_path / artifact.TARBALL).write_bytes(gzip.compress(header.tobuf() + bytes(1024)))
    with pytest.raises(artifact.ArtifactError, match=r"model\.tar\.gz: member 'model\.npz' is 4,294,967,296 "
                                                     r"bytes; .* more than the 1,000,000 bytes of memory"):
        artifact.load(tmp_path, max_bytes=1_000_000)


def test_a_compressed_npz_is_refused_by_its_members_sizes(tmp_path: Path) -> None:
    CORRUPTIONS[0].write(tmp_path)
    np.savez_compressed(tmp_path / artifact.ARRAYS_FILE, V=np.zeros(4 << 20, np.float32))  # 16 MB in 16 kB
    assert (tmp_path / artifact.ARRAYS_FILE).stat().st_size < 100_000
    with pytest.raises(artifact.ArtifactError, match=r"model\.npz in .* holds 16,777,\d+ bytes of arrays, more "
                                                     r"than the 1,000,000 bytes"):
        artifact.load(tmp_path, max_bytes=1_000_000)


def test_non_finite_weights_are_never_saved(tmp_path: Path) -> None:
    model = fm_model()
    model.V_[2, 1] = np.inf
    model.w_[:3] = np.nan
    with pytest.raises(artifact.NonFiniteError, match=r"model\.npz: 'w' holds 3 NaN and 0 infinite of its 8 "
                                                      r"values; 'V' holds 0 NaN and 1 infinite of its 16 values"):
        artifact.save(tmp_path, model)
    assert list(tmp_path.iterdir()) == []
