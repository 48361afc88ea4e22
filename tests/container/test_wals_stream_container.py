"""WALS on data larger than memory, in the real image: under ``docker run --memory`` a job whose in-memory path
would need more than 3x the limit chooses ``data_loading=stream`` by itself (data_loading=auto), trains from
the memory-mapped files and writes the model; the scratch files are gone at the end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from algorithm.artifact import load
from container.wals_training import IN_MEMORY_BYTES_PER_BYTE
from tests.container.helpers import docker

pytestmark = pytest.mark.docker

LIMIT_MIB = 320
USERS, ITEMS = 200_000, 20_000


def write_counts(path: Path, entries: int, seed: int = 0) -> int:
    """``entries`` lines of (user, item, count) with string ids; returns the file's bytes."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True)
    with open(path, "w") as handle:
        handle.write("user,item,count\n")
        for start in range(0, entries, 1 << 20):
            size = min(1 << 20, entries - start)
            users = rng.integers(0, USERS, size).tolist()
            items = (rng.zipf(1.3, size) % ITEMS).tolist()
            counts = rng.integers(1, 9, size).tolist()
            handle.write("".join(f"user-{u},item-{i},{c}\n" for u, i, c in zip(users, items, counts, strict=True)))
    return path.stat().st_size


def test_data_three_times_the_memory_limit_trains_from_disk(docker_image: str, tmp_path: Path) -> None:
    opt_ml = tmp_path / "opt_ml"
    size = write_counts(opt_ml / "input/data/train/counts.csv", 7_000_000)
    assert size * IN_MEMORY_BYTES_PER_BYTE >= 3 * LIMIT_MIB << 20
    config = opt_ml / "input/config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(
        {"algorithm": "wals", "embedding_dimension": "4", "max_sweeps": "2", "alpha": "2", "num_threads": "2"}))
    (config / "inputdataconfig.json").write_text(json.dumps({"train": {"ContentType": "text/csv"}}))
    result = docker("run", "--rm", f"--memory={LIMIT_MIB}m", f"--memory-swap={LIMIT_MIB}m", "-v",
                    f"{opt_ml}:/opt/ml", docker_image, "train", timeout=1200, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "data_loading=auto: streaming the 'train' channel" in output
    model = load(opt_ml / "model")
    assert model.wals.row_factors_.shape[1] == 4 and np.isfinite(model.wals.row_factors_).all()
    assert len(model.row_ids) == USERS and len(model.col_ids) <= ITEMS and model.seen.nnz > 1_000_000
    assert not any((opt_ml / "input/scratch").iterdir())
