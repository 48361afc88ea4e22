#!/usr/bin/env python3
"""Write the bundled sample data set of local_test/: scikit-learn's 8x8 digits as "is it a 0?".

The task of the SageMaker FM-on-MNIST notebook at a size that fits in the repository: 1,797 images of
64 pixels scaled to [0, 1], label 1.0 for a zero and 0.0 otherwise, split 80/20 (stratified, seeded).
Channels are written with the official SDK's ``sagemaker.amazon.common.write_numpy_to_dense_tensor``
(float32 features and labels, as the FM notebook does), so the files are exactly what a SageMaker user
uploads. Also writes small request bodies for ``local_test/predict.sh`` (JSON, JSON Lines, CSV and
RecordIO-protobuf) from the first test rows.

    .venv/bin/python scripts/make_sample_data.py [--root local_test] [--seed 0]
"""

from __future__ import annotations

import argparse
import io
import json
import os
from pathlib import Path

os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")

import numpy as np
from sagemaker.amazon.common import write_numpy_to_dense_tensor
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

N_REQUEST_ROWS = 5


def write_recordio(path: Path, features: np.ndarray, labels: np.ndarray | None) -> None:
    buffer = io.BytesIO()
    write_numpy_to_dense_tensor(buffer, features, labels)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent / "local_test")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    digits = load_digits()
    features = (digits.data / 16.0).astype(np.float32)  # pixel values 0..16 -> [0, 1]
    labels = (digits.target == 0).astype(np.float32)  # "is it a 0?"
    x_train, x_test, y_train, y_test = train_test_split(
        features, labels, test_size=0.2, random_state=args.seed, stratify=labels
    )

    data_dir = args.root / "test_dir" / "input" / "data"
    write_recordio(data_dir / "train" / "digits-train.pbr", x_train, y_train)
    write_recordio(data_dir / "test" / "digits-test.pbr", x_test, y_test)

    requests = args.root / "requests"
    requests.mkdir(parents=True, exist_ok=True)
    rows = x_test[:N_REQUEST_ROWS]
    as_lists = [[round(float(v), 4) for v in row] for row in rows]
    (requests / "digits.json").write_text(json.dumps({"instances": [{"features": row} for row in as_lists]}) + "\n")
    (requests / "digits.jsonl").write_text("".join(json.dumps({"features": row}) + "\n" for row in as_lists))
    (requests / "digits.csv").write_text("".join(",".join(f"{v:g}" for v in row) + "\n" for row in as_lists))
    write_recordio(requests / "digits.pbr", rows, None)
    (requests / "expected_labels.json").write_text(json.dumps([float(v) for v in y_test[:N_REQUEST_ROWS]]) + "\n")

    print(
        f"train: {len(y_train)} rows ({int(y_train.sum())} zeros), test: {len(y_test)} rows "
        f"({int(y_test.sum())} zeros), feature_dim {features.shape[1]}; written under {args.root}"
    )


if __name__ == "__main__":
    main()
