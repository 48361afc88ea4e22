"""The built-in SageMaker FM's model, ``model_algo-1``: a zip of ``symbol.json`` (the MXNet graph), ``params``
(an MXNet NDArray list, ``algorithm.mxnet_params``) and ``meta.json``, read into and written from this project's
FM arrays (``w0`` (1,), ``w`` (feature_dim,), ``V`` (feature_dim, num_factors)).

Reading takes the name variants of the built-in's checkpoints: ``v`` (feature_dim, num_factors) with
``w1_weight`` (feature_dim, 1) and ``w0_weight`` (1,), or ``v`` (num_factors, feature_dim) with
``Linear_Plus_Bias_weight`` (1, feature_dim) and ``Linear_Plus_Bias_bias`` (1,); names with or without
``arg:``; either orientation of each array; dense or row_sparse storage. ``feature_dim``, ``num_factors``
and ``predictor_type`` come from ``meta.json`` (``training_parameters``, or its top level) and must agree
with the shapes; ``predictor_type`` may instead come from the graph's output (``LogisticRegressionOutput``:
binary_classifier, ``LinearRegressionOutput``: regressor).

Writing gives what MXNet's ``Module.load(prefix, 0, False, label_names=['out_label'])`` binds after the
renames symbol.json -> PREFIX-symbol.json and params -> PREFIX-0000.params: params ``arg:v``
(feature_dim, num_factors), ``arg:w1_weight`` (feature_dim, 1), ``arg:w0_weight`` (1,), dense float32, and
the FM scoring graph on a csr ``data`` input (dot products, as the built-in's; a dense batch also binds,
MXNet converting it) ending in ``out`` with label ``out_label``.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from algorithm import archives, mxnet_params

SYMBOL, PARAMS, META = "symbol.json", "params", "meta.json"
MEMBER_PREFIX = "model_algo-"
MEMBER = "model_algo-1"
PREDICTOR_TYPES = ("binary_classifier", "regressor")
OUTPUT_OPS = {"LogisticRegressionOutput": "binary_classifier", "LinearRegressionOutput": "regressor"}
FACTORS = ("v",)
LINEAR = ("w1_weight", "Linear_Plus_Bias_weight")
BIAS = ("w0_weight", "Linear_Plus_Bias_bias")
JSON_LIMIT = 64 << 20
PARAMS_LIMIT = 1 << 36
LIMITS = {SYMBOL: JSON_LIMIT, META: JSON_LIMIT, "*": PARAMS_LIMIT}


class BuiltinModelError(ValueError):
    """The built-in's model cannot be read or written (the message names the file and the field)."""


def read(payload: bytes, source: str, max_bytes: int | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(meta, arrays) in ``algorithm.artifact``'s FM form from the bytes of a ``model_algo-1`` zip (``source``
    names it in errors), its members together at most ``max_bytes`` once decompressed. Checks everything
    before returning: nothing is half-read."""
    try:
        files = archives.read_zip(payload, source, LIMITS, max_bytes)
    except archives.ArchiveError as err:
        raise BuiltinModelError(str(err)) from None
    missing = [name for name in (PARAMS, META) if name not in files]
    if missing:
        raise BuiltinModelError(f"{source} has no {' and no '.join(missing)} (members: {sorted(files)}): not a "
                                "model_algo-1 of the built-in FM")
    fields = _meta_fields(files[META], f"{source}/{META}")
    if fields.get("predictor_type") is None and SYMBOL in files:
        fields["predictor_type"] = _graph_predictor_type(files[SYMBOL], f"{source}/{SYMBOL}")
    where = f"{source}/{PARAMS}"
    try:
        named = mxnet_params.read(files[PARAMS])
    except mxnet_params.ParamsFormatError as err:
        raise BuiltinModelError(f"{where}: {err}") from None
    w0, w, V = _fm_arrays(named, fields, where, f"{source}/{META}")
    predictor_type = fields.get("predictor_type")
    if predictor_type not in PREDICTOR_TYPES:
        raise BuiltinModelError(
            f"{source}/{META}: training_parameters.predictor_type is {predictor_type!r}; expected one of "
            f"{list(PREDICTOR_TYPES)} (or a graph in {SYMBOL} ending in {' or '.join(OUTPUT_OPS)})")
    feature_dim, num_factors = V.shape
    hyperparameters = {"feature_dim": feature_dim, "num_factors": num_factors, "predictor_type": predictor_type}
    meta = {"algorithm": "fm", **hyperparameters, "hyperparameters": hyperparameters,
            "imported_from": f"the built-in FM's {source}"}
    return meta, {"w0": w0, "w": w, "V": V}


def _meta_fields(raw: bytes, where: str) -> dict[str, Any]:
    """feature_dim, num_factors (ints or None) and predictor_type (str or None) from meta.json."""
    try:
        meta = json.loads(raw)
    except ValueError as err:
        raise BuiltinModelError(f"{where} is not valid JSON: {err}") from None
    if not isinstance(meta, dict):
        raise BuiltinModelError(f"{where} must hold a JSON object, not {type(meta).__name__}")
    section = meta.get("training_parameters", meta)
    prefix = "training_parameters." if "training_parameters" in meta else ""
    if not isinstance(section, dict):
        raise BuiltinModelError(f"{where}: training_parameters must be a JSON object")
    fields: dict[str, Any] = {}
    for name in ("feature_dim", "num_factors"):
        value = section.get(name)
        try:
            number = None if value is None else float(value)
        except (TypeError, ValueError):
            number = -1.0
        if number is not None and (not number.is_integer() or number < 1):
            raise BuiltinModelError(f"{where}: {prefix}{name} is {value!r}; expected a positive integer")
        fields[name] = None if number is None else int(number)
    predictor_type = section.get("predictor_type")
    fields["predictor_type"] = None if predictor_type is None else str(predictor_type)
    return fields


def _graph_predictor_type(raw: bytes, where: str) -> str | None:
    try:
        graph = json.loads(raw)
        ops = {node.get("op") for node in graph["nodes"]}
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise BuiltinModelError(f"{where} is not an MXNet graph (JSON with a 'nodes' list): {err}") from None
    found = {OUTPUT_OPS[op] for op in ops if op in OUTPUT_OPS}
    return found.pop() if len(found) == 1 else None


def _one_of(named: dict[str, np.ndarray], names: tuple[str, ...], where: str) -> tuple[str, np.ndarray]:
    present = [name for name in names if name in named]
    if len(present) != 1:
        what = "none" if not present else " and ".join(present)
        raise BuiltinModelError(f"{where} needs exactly one of the arrays {list(names)}, has {what} "
                                f"(arrays: {sorted(named)})")
    return present[0], named[present[0]]


def _fm_arrays(named_with_prefix: dict[str, np.ndarray], fields: dict[str, Any], where: str,
               meta_where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(w0, w, V) in this project's shapes, checked against each other and against meta.json's fields."""
    named = {}
    for key, array in named_with_prefix.items():
        kind, _, name = key.rpartition(":")
        if kind not in ("", "arg") or name not in (*FACTORS, *LINEAR, *BIAS):
            raise BuiltinModelError(f"{where} holds an array {key!r} the built-in FM does not have; expected "
                                    f"{list(FACTORS)}, one of {list(LINEAR)} and one of {list(BIAS)} "
                                    "(optionally prefixed 'arg:')")
        if name in named:
            raise BuiltinModelError(f"{where} holds array {name!r} twice")
        if not np.issubdtype(array.dtype, np.floating):
            raise BuiltinModelError(f"{where}: array {key!r} is {array.dtype}; the built-in's arrays are float32")
        named[name] = array
    _, factors = _one_of(named, FACTORS, where)
    linear_name, linear = _one_of(named, LINEAR, where)
    bias_name, bias = _one_of(named, BIAS, where)
    if bias.size != 1:
        raise BuiltinModelError(f"{where}: array {bias_name!r} has shape {bias.shape}; expected one value (1,)")
    if linear.ndim not in (1, 2) or (linear.ndim == 2 and 1 not in linear.shape):
        raise BuiltinModelError(f"{where}: array {linear_name!r} has shape {linear.shape}; expected "
                                "(feature_dim, 1) or (1, feature_dim)")
    if factors.ndim != 2:
        raise BuiltinModelError(f"{where}: array 'v' has shape {factors.shape}; expected (feature_dim, "
                                "num_factors) or (num_factors, feature_dim)")
    feature_dim = fields["feature_dim"] if fields["feature_dim"] is not None else linear.size
    if linear.size != feature_dim:
        raise BuiltinModelError(f"{where}: array {linear_name!r} has shape {linear.shape}, but {meta_where} says "
                                f"feature_dim={feature_dim}: the files come from different models")
    transposed = factors.shape[0] != feature_dim or (factors.shape[1] == feature_dim
                                                       and linear_name == "Linear_Plus_Bias_weight")
    V = factors.T if transposed else factors
    if V.shape[0] != feature_dim:
        raise BuiltinModelError(f"{where}: array 'v' has shape {factors.shape}, which has no feature_dim="
                                f"{feature_dim} side (from {linear_name!r} {linear.shape} and {meta_where})")
    if fields["num_factors"] is not None and V.shape[1] != fields["num_factors"]:
        raise BuiltinModelError(f"{where}: array 'v' has shape {factors.shape}, but {meta_where} says "
                                f"num_factors={fields['num_factors']}")
    arrays = (bias.reshape(1), linear.reshape(feature_dim), V)
    for name, array in zip((bias_name, linear_name, "v"), arrays, strict=True):
        if not np.isfinite(array).all():
            raise BuiltinModelError(f"{where}: array {name!r} holds NaN or infinite values")
    w0, w, V = (np.ascontiguousarray(array, dtype=np.float32) for array in arrays)
    return w0, w, V


# ------------------------------------------------------------------------------------------------ writing


def write(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray], producer: str) -> bytes:
    """The bytes of a ``model_algo-1`` zip holding an FM artifact's model (``meta`` and ``arrays`` as
    ``algorithm.artifact.read`` returns them); ``producer`` is recorded in meta.json."""
    if meta.get("algorithm") != "fm":
        raise BuiltinModelError(f"only FM models have the built-in's layout; this model is "
                                f"algorithm={meta.get('algorithm')!r}")
    V = np.ascontiguousarray(arrays["V"], dtype=np.float32)
    feature_dim, num_factors = V.shape
    predictor_type = str(meta["predictor_type"])
    params = mxnet_params.write({
        "arg:v": V,
        "arg:w1_weight": np.asarray(arrays["w"], dtype=np.float32).reshape(feature_dim, 1),
        "arg:w0_weight": np.asarray(arrays["w0"], dtype=np.float32).reshape(1),
    })
    meta_json = {"training_parameters": {"feature_dim": str(feature_dim), "num_factors": str(num_factors),
                                         "predictor_type": predictor_type},
                 "producer": producer}
    buffer = io.BytesIO()
    stamp = time.localtime()[:6]
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in ((SYMBOL, symbol_json(feature_dim, num_factors, predictor_type)),
                              (PARAMS, params), (META, json.dumps(meta_json, indent=2).encode())):
            info = zipfile.ZipInfo(name, stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, content)
    return buffer.getvalue()


def symbol_json(feature_dim: int, num_factors: int, predictor_type: str) -> bytes:
    """The MXNet graph (``Symbol.tojson()`` form) scoring FM on a csr ``data`` input:
    ``out = Output(dot(x, w1_weight) + w0_weight + 0.5 * (sum((x.v)^2, 1) - dot(x^2, sum(v^2, 1))))``."""
    output = {"binary_classifier": "LogisticRegressionOutput", "regressor": "LinearRegressionOutput"}[predictor_type]
    nodes: list[dict[str, Any]] = []

    def node(op: str, name: str, inputs: tuple[int, ...] = (), **attrs: str) -> int:
        entry: dict[str, Any] = {"op": op, "name": name}
        if attrs:
            entry["attrs"] = attrs
        entry["inputs"] = [[i, 0, 0] for i in inputs]
        nodes.append(entry)
        return len(nodes) - 1

    keep = {"axis": "1", "keepdims": "True"}
    data = node("null", "data", __storage_type__="2")
    w1 = node("null", "w1_weight", __shape__=f"({feature_dim}, 1)")
    w0 = node("null", "w0_weight", __shape__="(1,)")
    v = node("null", "v", __shape__=f"({feature_dim}, {num_factors})")
    linear = node("broadcast_add", "linear", (node("dot", "dot_linear", (data, w1)), w0))
    summed = node("sum", "sum_vx_squared", (node("square", "vx_squared", (node("dot", "vx", (data, v)),)),), **keep)
    v_squared = node("sum", "sum_v_squared", (node("square", "v_squared", (v,)),), **keep)
    self_terms = node("dot", "self_interactions", (node("square", "x_squared", (data,)), v_squared))
    pairwise = node("_mul_scalar", "pairwise", (node("elemwise_sub", "pairwise_sum", (summed, self_terms)),),
                    scalar="0.5")
    score = node("elemwise_add", "score", (linear, pairwise))
    out = node(output, "out", (score, node("null", "out_label")))
    graph = {
        "nodes": nodes,
        "arg_nodes": [i for i, entry in enumerate(nodes) if entry["op"] == "null"],
        "node_row_ptr": list(range(len(nodes) + 1)),
        "heads": [[out, 0, 0]],
        "attrs": {"mxnet_version": ["int", 10901]},
    }
    return json.dumps(graph, indent=2).encode()
