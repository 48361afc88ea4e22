"""Run with MXNet's own python (.venv-mxnet): write built-in-style checkpoints with MXNet and the scores MXNet's
NDArray arithmetic gives on them, for tests/integration/test_mxnet_compat.py.

usage: write_checkpoints.py OUT_DIR

For every case (name variant x shape x storage) it writes OUT_DIR/<case>/params (``mx.nd.save``, keys
``arg:<name>``), OUT_DIR/<case>/meta.json and OUT_DIR/<case>/symbol.json (``Symbol.tojson()``); then
OUT_DIR/X.npy (the rows scored) and OUT_DIR/cases.json: {case: {"feature_dim", "num_factors",
"predictor_type", "scores"}}.
"""

import json
import sys
from pathlib import Path

import mxnet as mx
import numpy as np

SHAPES = [(1, 1), (7, 3), (40, 8), (5, 5), (300, 64)]
ROWS = 25


def graph(variant, feature_dim, num_factors, predictor_type, stype):
    """The FM scoring graph with the variant's parameter names and orientations."""
    x = mx.sym.Variable("data", stype="csr")
    if variant == "w1_weight":
        v = mx.sym.Variable("v", shape=(feature_dim, num_factors), stype=stype)
        linear = mx.sym.broadcast_add(mx.sym.dot(x, mx.sym.Variable("w1_weight", shape=(feature_dim, 1),
                                                                     stype=stype)),
                                      mx.sym.Variable("w0_weight", shape=(1,)))
        vx = mx.sym.dot(x, v)
        v_squared = mx.sym.sum(mx.sym.square(v), axis=1, keepdims=True)
    else:
        v = mx.sym.Variable("v", shape=(num_factors, feature_dim))
        linear = mx.sym.FullyConnected(x, num_hidden=1, name="Linear_Plus_Bias")
        vx = mx.sym.dot(x, v, transpose_b=True)
        v_squared = mx.sym.transpose(mx.sym.sum(mx.sym.square(v), axis=0, keepdims=True))
    pairwise = 0.5 * (mx.sym.sum(mx.sym.square(vx), axis=1, keepdims=True)
                      - mx.sym.dot(mx.sym.square(x), v_squared))
    output = mx.sym.LogisticRegressionOutput if predictor_type == "binary_classifier" else mx.sym.LinearRegressionOutput
    return output(linear + pairwise, mx.sym.Variable("out_label"), name="out")


def scores(X, V, w, w0, classifier):
    """FM scores with MXNet's NDArray arithmetic (V (d, k), w (d,), w0 (1,) as NDArrays)."""
    vx = mx.nd.dot(X, V)
    z = (mx.nd.dot(X, w.reshape((-1, 1))).reshape((-1,)) + w0
         + 0.5 * (mx.nd.sum(vx * vx, axis=1) - mx.nd.dot(X * X, mx.nd.sum(V * V, axis=1))))
    return mx.nd.sigmoid(z) if classifier else z


def main(out_dir):
    out = Path(out_dir)
    rng = np.random.default_rng(7)
    cases = {}
    max_d = max(d for d, _ in SHAPES)
    X_all = ((rng.random((ROWS, max_d)) < 0.2) * rng.normal(size=(ROWS, max_d))).astype(np.float32)
    np.save(out / "X.npy", X_all)
    for variant in ("w1_weight", "Linear_Plus_Bias"):
        for d, k in SHAPES:
            for stype in ("default", "row_sparse"):
                if variant == "Linear_Plus_Bias" and stype == "row_sparse":
                    continue
                predictor_type = "binary_classifier" if (d + k) % 2 else "regressor"
                name = f"{variant}-{d}x{k}-{stype}"
                V = mx.nd.array(rng.normal(scale=0.2, size=(d, k)), dtype="float32")
                w = mx.nd.array(rng.normal(size=d), dtype="float32")
                w0 = mx.nd.array(rng.normal(size=1), dtype="float32")
                if stype == "row_sparse":  # rows never touched by training stay out of the storage
                    V[::3] = 0
                    w[::3] = 0
                if variant == "w1_weight":
                    params = {"v": V, "w1_weight": w.reshape((d, 1)), "w0_weight": w0}
                else:
                    params = {"v": V.T, "Linear_Plus_Bias_weight": w.reshape((1, d)), "Linear_Plus_Bias_bias": w0}
                if stype == "row_sparse":
                    params = {key: value.tostype("row_sparse") if value.shape[0] == d else value
                              for key, value in params.items()}
                    mx.nd.waitall()  # (MXNet's engine converts asynchronously: once in ~30 runs a row_sparse array
                    # was saved with its index but not yet its rows)
                case = out / name
                case.mkdir()
                mx.nd.save(str(case / "params"), {f"arg:{key}": value for key, value in params.items()})
                (case / "symbol.json").write_text(graph(variant, d, k, predictor_type, stype).tojson())
                (case / "meta.json").write_text(json.dumps({"training_parameters": {
                    "feature_dim": str(d), "num_factors": str(k), "predictor_type": predictor_type}}))
                X = mx.nd.array(X_all[:, :d])
                cases[name] = {"feature_dim": d, "num_factors": k, "predictor_type": predictor_type,
                               "stype": stype,
                               "scores": scores(X, V, w, w0, predictor_type == "binary_classifier").asnumpy().tolist()}
    (out / "cases.json").write_text(json.dumps(cases))


if __name__ == "__main__":
    main(sys.argv[1])
