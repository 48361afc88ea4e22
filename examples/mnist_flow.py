"""The "Factorization Machines on MNIST" notebook's flow, as a script: is this handwritten digit a 0?

record_set -> fit -> deploy -> predict -> confusion matrix -> tuning -> delete_endpoint, on any back end:

    python -m examples.mnist_flow --instance-type local_process     # subprocesses, no Docker
    python -m examples.mnist_flow --instance-type local             # the image in Docker
    python -m examples.mnist_flow --instance-type ml.c5.xlarge --role arn:aws:iam::...:role/SageMaker \
        --image <account>.dkr.ecr.<region>.amazonaws.com/fm-wals:latest

MNIST cannot be downloaded here, so the data are scikit-learn's bundled 8x8 digits; a local ``mnist.pkl.gz``
(the notebook's file) is used instead when ``--mnist`` points at it. Exits 1 if held-out accuracy < 0.98.
"""

from __future__ import annotations

import argparse
import gzip
import pickle
import sys
from pathlib import Path

import numpy as np

from fmwals import FactorizationMachines
from fmwals.parameter import ContinuousParameter, IntegerParameter
from fmwals.tuner import HyperparameterTuner

REQUIRED_ACCURACY = 0.98


def load(mnist: Path | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train vectors, train labels, test vectors, test labels): float32, label 1 when the digit is a 0."""
    if mnist is not None and mnist.is_file():
        with gzip.open(mnist, "rb") as f:
            (x, y), _, (xt, yt) = pickle.load(f, encoding="latin1")
    else:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits_x, digits_y = load_digits(return_X_y=True)
        x, xt, y, yt = train_test_split(
            digits_x / 16.0, digits_y, test_size=0.25, random_state=0, stratify=digits_y
        )
    return (
        np.asarray(x, np.float32),
        np.where(y == 0, 1.0, 0.0).astype(np.float32),
        np.asarray(xt, np.float32),
        np.where(yt == 0, 1.0, 0.0).astype(np.float32),
    )


def confusion(actual: np.ndarray, predicted: np.ndarray) -> str:
    """The notebook's ``pd.crosstab(actuals, predictions)`` as text."""
    lines = ["predictions      0      1", "actuals"]
    for label in (0, 1):
        counts = [int(np.sum((actual == label) & (predicted == p))) for p in (0, 1)]
        lines.append(f"{label:<10} {counts[0]:>7} {counts[1]:>6}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--instance-type", default="local_process")
    parser.add_argument("--role", default="arn:aws:iam::123456789012:role/SageMakerRole")
    parser.add_argument("--image", default=None, help="image URI (default $FMWALS_IMAGE or fm-wals:latest)")
    parser.add_argument("--mnist", type=Path, default=Path("mnist.pkl.gz"))
    parser.add_argument("--tuning-jobs", type=int, default=4, help="0 skips tuning")
    args = parser.parse_args(argv)

    train_x, train_y, test_x, test_y = load(args.mnist)
    print(f"train {train_x.shape}, test {test_x.shape}, zeros in test: {int(test_y.sum())}")

    # The notebook's estimator, with the SDK v1 argument names it uses.
    fm = FactorizationMachines(
        role=args.role,
        train_instance_count=1,
        train_instance_type=args.instance_type,
        num_factors=10,
        predictor_type="binary_classifier",
        epochs=20,
        bias_lr=0.1,
        linear_lr=0.1,
        factors_lr=0.01,
        image_uri=args.image,
    )
    train = fm.record_set(train_x, train_y)
    test = fm.record_set(test_x, test_y, channel="test")
    fm.fit([train, test], mini_batch_size=50)
    final = fm.training_job_analytics.metrics()
    print("test accuracy reported by the job:", final["test:binary_classification_accuracy"][-1])

    predictor = fm.deploy(initial_instance_count=1, instance_type=args.instance_type)
    try:
        # A list of Record messages, as the SDK's FactorizationMachinesPredictor returns.
        record = predictor.predict(test_x[30:31])[0]
        print("one record: score", record.label["score"].float32_tensor.values[0])
        predictions = np.array([
            r.label["predicted_label"].float32_tensor.values[0]
            for batch in np.array_split(test_x, 10)
            for r in predictor.predict(batch)
        ])
    finally:
        fm.delete_endpoint()
    accuracy = float(np.mean(predictions == test_y))
    print(confusion(test_y, predictions))
    print(f"held-out accuracy: {accuracy:.4f}")

    if args.tuning_jobs:
        tuner = HyperparameterTuner(
            fm,
            "test:binary_classification_accuracy",
            {
                "linear_lr": ContinuousParameter(1e-3, 0.5, "Logarithmic"),
                "factors_lr": ContinuousParameter(1e-4, 0.1, "Logarithmic"),
                "num_factors": IntegerParameter(2, 16),
            },
            max_jobs=args.tuning_jobs,
            max_parallel_jobs=2,
        )
        tuner.fit([train, test])
        print(
            tuner.analytics()[
                [
                    "TrainingJobName",
                    "TrainingJobStatus",
                    "FinalObjectiveValue",
                    "linear_lr",
                    "factors_lr",
                    "num_factors",
                ]
            ].to_string(index=False)
        )
        print("best training job:", tuner.best_training_job())
    return 0 if accuracy >= REQUIRED_ACCURACY else 1


if __name__ == "__main__":
    sys.exit(main())
