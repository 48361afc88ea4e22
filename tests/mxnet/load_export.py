"""Run with MXNet's own python (.venv-mxnet): load a model.tar.gz in the built-in FM's layout the way the AWS
blog's scripts do, and score rows with it, for tests/integration/test_mxnet_compat.py.

usage: load_export.py MODEL_TAR_GZ X_NPY WORK_DIR

Extracts model_algo-1, unzips it, renames symbol.json -> model-symbol.json and params -> model-0000.params,
then ``mx.module.Module.load('model', 0, False, label_names=['out_label'])`` and ``mx.nd.load`` of the params.
Prints JSON: {"arg_names", "shapes" (of mx.nd.load's arrays), "meta" (meta.json), "scores" (MXNet NDArray
arithmetic on Module.load's arg params), "module_scores" (the graph bound and run forward on the rows as csr)}.
"""

import json
import os
import sys
import tarfile
import zipfile

import mxnet as mx
import numpy as np


def main(tarball, x_path, work):
    with tarfile.open(tarball) as tar:
        tar.extract("model_algo-1", work)
    with zipfile.ZipFile(os.path.join(work, "model_algo-1")) as archive:
        archive.extractall(work)
    os.rename(os.path.join(work, "symbol.json"), os.path.join(work, "model-symbol.json"))
    os.rename(os.path.join(work, "params"), os.path.join(work, "model-0000.params"))
    with open(os.path.join(work, "meta.json")) as handle:
        meta = json.load(handle)
    prefix = os.path.join(work, "model")
    module = mx.module.Module.load(prefix, 0, False, label_names=["out_label"])
    arg = module._arg_params
    loaded = mx.nd.load(prefix + "-0000.params")
    V, w, w0 = arg["v"], arg["w1_weight"], arg["w0_weight"]
    X = mx.nd.array(np.load(x_path))
    vx = mx.nd.dot(X, V)
    z = (mx.nd.dot(X, w).reshape((-1,)) + w0
         + 0.5 * (mx.nd.sum(vx * vx, axis=1) - mx.nd.dot(X * X, mx.nd.sum(V * V, axis=1))))
    classifier = meta["training_parameters"]["predictor_type"] == "binary_classifier"
    scores = mx.nd.sigmoid(z) if classifier else z
    module.bind(data_shapes=[("data", X.shape)], for_training=False)
    module.forward(mx.io.DataBatch([X.tostype("csr")]), is_train=False)
    print(json.dumps({
        "arg_names": sorted(module.symbol.list_arguments()),
        "shapes": {key: list(value.shape) for key, value in loaded.items()},
        "dtypes": {key: str(value.dtype.__name__ if hasattr(value.dtype, "__name__") else value.dtype)
                   for key, value in loaded.items()},
        "meta": meta,
        "scores": scores.asnumpy().tolist(),
        "module_scores": module.get_outputs()[0].asnumpy().ravel().tolist(),
    }))


if __name__ == "__main__":
    main(*sys.argv[1:])
