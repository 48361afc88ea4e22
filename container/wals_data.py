"""WALS channels to matrices: ``train`` triplets -> the training matrix and its id maps; ``test`` triplets ->
a held-out matrix over the same ids; ``row_weights``/``col_weights`` -> per-row/per-column weight vectors.

Content types: ``text/csv`` or ``application/x-recordio-protobuf`` (``container.formats.triplets``) for
train and test, ``text/csv`` (``id,weight``) for the weight channels; without a declared ``ContentType`` a
file's first bytes decide (``container.channels.decode_channel``). File mode reads every file of the
channel, Pipe mode the FIFO of epoch 0; gzip is undone either way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from algorithm.wals_model import IdMap
from container.channels import decode_channel
from container.config import ChannelConfig
from container.errors import ChannelError, ClientError, DataError
from container.formats import triplets
from container.formats.registry import CSV, RECORDIO
from container.paths import SageMakerPaths

log = logging.getLogger("train.wals")


@dataclass(frozen=True)
class Matrices:
    """The training matrix (rows x cols, float32 CSR, duplicates summed), its id maps, the test matrix."""

    train: sp.csr_matrix
    row_ids: IdMap
    col_ids: IdMap
    test: sp.csr_matrix | None


def read_triplets(paths: SageMakerPaths, config: ChannelConfig, hp: dict[str, Any]) -> triplets.Triplets:
    """Every entry of a train or test channel; ChannelError when it holds none."""
    num_rows, num_cols = hp["num_rows"], hp["num_cols"]
    nonnegative = config.name == "train" and hp["alpha"] is not None

    def from_csv(body: bytes, source: str) -> triplets.Triplets:
        return triplets.decode_triplets_csv(body, source=source, num_rows=num_rows, num_cols=num_cols,
                                            nonnegative_values=nonnegative)

    def from_recordio(body: bytes, source: str) -> triplets.Triplets:
        if num_rows is None:
            raise ClientError(f"{source}: RecordIO-protobuf triplets are in the one-hot layout "
                              "[row, num_rows + col]: set the num_rows hyperparameter to read them")
        return triplets.decode_triplets_recordio(body, source=source, num_rows=num_rows, num_cols=num_cols,
                                                 nonnegative_values=nonnegative)

    parts = decode_channel(paths, config, {CSV: from_csv, RECORDIO: from_recordio})
    parts = [p for p in parts if len(p)]
    if not parts:
        raise no_entries(paths, config)
    return triplets.concatenate(parts)


def no_entries(paths: SageMakerPaths, config: ChannelConfig) -> ChannelError:
    """The error for a channel without entries."""
    return ChannelError(f"Channel {config.name!r} has no entries ({config.input_mode} mode, looked in "
                        f"{paths.channel_dir(config.name)}); expected {triplets.FIELDS} lines or RecordIO")


def entry_values(data: triplets.Triplets, alpha: float | None) -> np.ndarray:
    """Values with the per-entry weights applied: the implicit form multiplies each count by its weight; the
    explicit form has no per-entry weight, so weights other than 1 are refused."""
    if data.weights is None or bool((data.weights == 1).all()):
        return data.values
    if alpha is None:
        raise ClientError("The train channel has per-entry weights other than 1 (the 4th CSV field or "
                          "label['weight']); they scale the counts of the implicit form (set alpha), while "
                          "the explicit form weighs entries by row_weights x col_weights only")
    return (data.values * data.weights).astype(np.float32)


def _id_map(ids: np.ndarray, names: np.ndarray | None, declared: int | None, n_ids: int | None = None
            ) -> tuple[IdMap, np.ndarray]:
    """The id map of one side and the matrix index of each entry: ``ids`` index ``names`` when given, else
    they are the indices themselves (declared size, or RecordIO with ``n_ids`` inferred)."""
    if names is None:
        return IdMap.range(declared if declared is not None else n_ids or 0), ids.astype(np.int64)
    id_map, index_of_name = IdMap.from_ids(names)
    return id_map, index_of_name[ids]


def test_index(ids: np.ndarray, names: np.ndarray | None, id_map: IdMap) -> np.ndarray:
    """The training matrix index of each test entry's id, -1 for ids training does not have."""
    return id_map.index(ids) if names is None else id_map.index(names)[ids]


def build_matrices(train: triplets.Triplets, test: triplets.Triplets | None, hp: dict[str, Any]) -> Matrices:
    """The training matrix over the ids seen in ``train`` (or 0..num_rows-1 / 0..num_cols-1 when declared),
    and ``test`` over the same ids, its entries with ids unseen in training dropped (count logged)."""
    row_ids, rows = _id_map(train.rows, train.row_names, hp["num_rows"])
    col_ids, cols = _id_map(train.cols, train.col_names, hp["num_cols"], int(train.cols.max()) + 1)
    shape = (len(row_ids), len(col_ids))
    matrix = sp.csr_matrix((entry_values(train, hp["alpha"]), (rows, cols)), shape=shape, dtype=np.float32)
    matrix.sum_duplicates()
    log.info("train: %d entries (%d distinct), %d rows x %d columns (%s row ids, %s column ids)", len(train),
             matrix.nnz, shape[0], shape[1], row_ids.kind, col_ids.kind)
    held_out = None if test is None else held_out_matrix(test, row_ids, col_ids)
    return Matrices(matrix, row_ids, col_ids, held_out)


def held_out_matrix(test: triplets.Triplets, row_ids: IdMap, col_ids: IdMap) -> sp.csr_matrix:
    """``test`` over the training ids, its entries with ids unseen in training dropped (count logged)."""
    test_rows = test_index(test.rows, test.row_names, row_ids)
    test_cols = test_index(test.cols, test.col_names, col_ids)
    known = (test_rows >= 0) & (test_cols >= 0)
    dropped = int((~known).sum())
    if dropped:
        log.warning("test: dropped %d of %d entries whose ids the training data does not have "
                    "(%d unknown row ids, %d unknown column ids)", dropped, len(test),
                    np.unique(test.rows[test_rows < 0]).size, np.unique(test.cols[test_cols < 0]).size)
    if not known.any():
        raise DataError(f"Channel 'test': none of its {len(test)} entries has a row id and a column id "
                        "seen in training")
    held_out = sp.csr_matrix((test.values[known], (test_rows[known], test_cols[known])),
                             shape=(len(row_ids), len(col_ids)), dtype=np.float32)
    held_out.sum_duplicates()
    log.info("test: %d entries (%d distinct)", int(known.sum()), held_out.nnz)
    return held_out


def read_weights(paths: SageMakerPaths, config: ChannelConfig, ids: IdMap, default: float,
                 declared: int | None) -> np.ndarray:
    """The weight vector of one side from its ``row_weights``/``col_weights`` channel (``id,weight`` CSV):
    ids the channel leaves out get ``default``; ids the training data does not have are dropped (logged)."""
    what = "row" if config.name == "row_weights" else "col"

    def from_csv(body: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
        return triplets.decode_id_weights_csv(body, source=source, what=what, declared=declared)

    parts = decode_channel(paths, config, {CSV: from_csv})
    if not parts:
        raise ChannelError(f"Channel {config.name!r} has no data (looked in "
                           f"{paths.channel_dir(config.name)})")
    given = np.concatenate([p[0] for p in parts])
    weights = np.concatenate([p[1] for p in parts])
    index = ids.index(given)
    unique, counts = np.unique(index[index >= 0], return_counts=True)
    if (counts > 1).any():
        twice = ids.to_list(unique[counts > 1][:1])[0]
        raise DataError(f"Channel {config.name!r}: {what} id {twice!r} has more than one weight")
    if (index < 0).any():
        log.warning("%s: dropped %d weight(s) of ids the training data does not have", config.name,
                    int((index < 0).sum()))
    vector = np.full(len(ids), default, dtype=np.float32)
    vector[index[index >= 0]] = weights[index >= 0]
    log.info("%s: %d of %d weights from the channel, the others %g", config.name, int((index >= 0).sum()),
             len(ids), default)
    return vector
