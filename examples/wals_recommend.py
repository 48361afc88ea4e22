"""Implicit-feedback recommendations with WALS (TensorFlow's ``WALSMatrixFactorization`` arguments), trained
by the image through the client:

    python -m examples.wals_recommend --instance-type local_process

A synthetic user x item matrix of counts (power-law item popularity, users with a few favourite genres) is
split into train and held-out entries, written as ``row,col,value`` CSV triplets by ``WALS.record_set``,
and trained with the implicit objective (``alpha``); the per-sweep loss and held-out ranking metrics come
from the job's log. The endpoint then answers top-5 items for known users, for a new user from their
interactions (fold-in), similar items and single scores.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import scipy.sparse as sp

from fmwals import WALS


def interactions(users: int = 600, items: int = 300, genres: int = 6, seed: int = 0) -> sp.csr_matrix:
    """Counts: each user likes two genres; item popularity follows a power law."""
    rng = np.random.default_rng(seed)
    item_genre = rng.integers(0, genres, items)
    popularity = 1.0 / np.arange(1, items + 1) ** 0.8
    rows, cols = [], []
    for user in range(users):
        liked = rng.choice(genres, 2, replace=False)
        weights = popularity * np.where(np.isin(item_genre, liked), 1.0, 0.05)
        chosen = rng.choice(items, rng.integers(5, 30), replace=True, p=weights / weights.sum())
        rows += [user] * len(chosen)
        cols += chosen.tolist()
    counts = sp.coo_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(users, items)).tocsr()
    counts.sum_duplicates()
    return counts


def split(matrix: sp.csr_matrix, held_out: float = 0.2, seed: int = 1) -> tuple[sp.coo_matrix, sp.coo_matrix]:
    coo = matrix.tocoo()
    test = np.random.default_rng(seed).random(coo.nnz) < held_out

    def part(mask: np.ndarray) -> sp.coo_matrix:
        return sp.coo_matrix((coo.data[mask], (coo.row[mask], coo.col[mask])), shape=matrix.shape)

    return part(~test), part(test)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--instance-type", default="local_process")
    parser.add_argument("--image", default=None)
    args = parser.parse_args(argv)

    counts = interactions()
    train, test = split(counts)
    users, items = counts.shape
    print(f"{users} users x {items} items, {train.nnz} training / {test.nnz} held-out entries")
    wals = WALS(
        num_rows=users,
        num_cols=items,
        embedding_dimension=16,
        unobserved_weight=1.0,
        regularization_coeff=1.0,
        max_sweeps=8,
        alpha=20.0,
        eval_k=10,
        role="role",
        instance_count=1,
        instance_type=args.instance_type,
        image_uri=args.image,
    )
    wals.fit({"train": wals.record_set(train), "test": wals.record_set(test, channel="test")})
    for name, values in sorted(wals.training_job_analytics.metrics().items()):
        if not name.endswith(":epoch"):
            print(f"{name:>24}: {values[-1]:.4f}")

    predictor = wals.deploy(1, args.instance_type)
    try:
        for user, answer in zip((0, 1, 2), predictor.recommend([0, 1, 2], k=5), strict=True):
            print(f"user {user}: items {answer['cols']} scores {[round(s, 3) for s in answer['scores']]}")
        newcomer = predictor.fold_in({"cols": [0, 3, 7], "values": [2.0, 1.0, 1.0]}, k=5)[0]
        print(f"a new user who likes items 0, 3, 7: items {newcomer['cols']}")
        print(f"items like item 0: {predictor.similar_cols(0, k=5)[0]['cols']}")
        print(f"score of (user 0, item 30): {predictor.score(0, 30)[0]['score']:.3f}")
    finally:
        wals.delete_endpoint()
    return 0


if __name__ == "__main__":
    sys.exit(main())
