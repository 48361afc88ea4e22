"""The built-in FM's model_algo-1 (algorithm.builtin_fm, algorithm.mxnet_params) through algorithm.artifact:
import in every place it is found, both name variants and orientations, export and read back, and bad input
(wrong magic, truncation, mismatched shapes, unknown arrays, path traversal) refused whole, naming the file
and the field. The same files against real MXNet: tests/integration/test_mxnet_compat.py."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from algorithm import artifact, builtin_fm, mxnet_params
from algorithm.fm import FactorizationMachines

ROOT = Path(__file__).resolve().parents[2]
D, K = 12, 4


def weights(seed: int = 0, d: int = D, k: int = K) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"w0": rng.normal(size=1).astype(np.float32), "w": rng.normal(size=d).astype(np.float32),
            "V": rng.normal(scale=0.3, size=(d, k)).astype(np.float32)}


def reference_scores(arrays: dict[str, np.ndarray], X: np.ndarray, classifier: bool) -> np.ndarray:
    w0, w, V = (arrays[name].astype(np.float64) for name in ("w0", "w", "V"))
    z = w0[0] + X @ w + 0.5 * (((X @ V) ** 2).sum(1) - (X**2) @ (V**2).sum(1))
    return 1 / (1 + np.exp(-z)) if classifier else z


def model_algo(params: dict[str, np.ndarray] | bytes, meta: object, symbol: bytes | None = None,
               extra: dict[str, bytes] | None = None) -> bytes:
    """A model_algo-1 zip from its parts (params as named arrays, or raw bytes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("params", params if isinstance(params, bytes) else mxnet_params.write(params))
        archive.writestr("meta.json", meta if isinstance(meta, bytes) else json.dumps(meta))
        if symbol is not None:
            archive.writestr("symbol.json", symbol)
        for name, content in (extra or {}).items():
            archive.writestr(name, content)
    return buffer.getvalue()


def w1_variant(arrays: dict[str, np.ndarray], prefix: str = "arg:") -> dict[str, np.ndarray]:
    return {f"{prefix}v": arrays["V"], f"{prefix}w1_weight": arrays["w"].reshape(-1, 1),
            f"{prefix}w0_weight": arrays["w0"]}


def linear_plus_bias_variant(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"arg:v": arrays["V"].T.copy(), "arg:Linear_Plus_Bias_weight": arrays["w"].reshape(1, -1),
            "arg:Linear_Plus_Bias_bias": arrays["w0"]}


def meta(predictor_type: str = "binary_classifier", d: int = D, k: int = K) -> dict[str, object]:
    return {"training_parameters": {"feature_dim": str(d), "num_factors": str(k), "predictor_type": predictor_type}}


def tarball(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return path


X = sp.random(30, D, density=0.3, format="csr", random_state=1, dtype=np.float32)


@pytest.mark.parametrize("variant", [w1_variant, lambda a: w1_variant(a, prefix=""), linear_plus_bias_variant])
@pytest.mark.parametrize("predictor_type", ["binary_classifier", "regressor"])
def test_both_name_variants_load_as_our_fm(tmp_path: Path, variant, predictor_type: str) -> None:
    arrays = weights()
    (tmp_path / "model_algo-1").write_bytes(model_algo(variant(arrays), meta(predictor_type)))
    model = artifact.load(tmp_path)
    assert isinstance(model, FactorizationMachines)
    assert (model.feature_dim, model.num_factors, model.predictor_type) == (D, K, predictor_type)
    expected = reference_scores(arrays, X.toarray(), predictor_type == "binary_classifier")
    np.testing.assert_allclose(model.predict_scores(X), expected, rtol=1e-5, atol=1e-6)


def test_found_in_a_directory_a_tarball_and_by_its_own_path(tmp_path: Path) -> None:
    arrays = weights()
    payload = model_algo(w1_variant(arrays), meta())
    member = tmp_path / "alone" / "model_algo-1"
    member.parent.mkdir()
    member.write_bytes(payload)
    packed = tarball(tmp_path / "model.tar.gz", {"model_algo-1": payload})
    beside = tmp_path / "local-mode"  # SageMaker local mode: the tarball and what it held, side by side
    beside.mkdir()
    tarball(beside / "model.tar.gz", {"model_algo-1": payload})
    for place in (member.parent, member, packed, tmp_path, beside):
        meta_read, read = artifact.read(place)
        assert meta_read["algorithm"] == "fm" and meta_read["feature_dim"] == D
        np.testing.assert_array_equal(read["V"], arrays["V"])


def test_predictor_type_from_the_graph_when_meta_json_has_none(tmp_path: Path) -> None:
    for predictor_type in ("binary_classifier", "regressor"):
        symbol = builtin_fm.symbol_json(D, K, predictor_type)
        (tmp_path / "model_algo-1").write_bytes(model_algo(w1_variant(weights()), {"training_parameters": {}}, symbol))
        assert artifact.load(tmp_path).predictor_type == predictor_type


def test_square_factors_follow_the_variant(tmp_path: Path) -> None:
    arrays = weights(d=K, k=K)  # v is square: only the names say which side is feature_dim
    for variant, expected in ((w1_variant, arrays["V"]), (linear_plus_bias_variant, arrays["V"])):
        (tmp_path / "model_algo-1").write_bytes(model_algo(variant(arrays), meta(d=K, k=K)))
        np.testing.assert_array_equal(artifact.read(tmp_path)[1]["V"], expected)


def test_export_then_import_is_exact(tmp_path: Path) -> None:
    arrays = weights(3)
    model = FactorizationMachines.from_artifact({"hyperparameters": {"feature_dim": D, "num_factors": K,
                                                                     "predictor_type": "regressor"}}, arrays)
    artifact.save(tmp_path / "ours", model)
    written = artifact.export_builtin(tmp_path / "ours", tmp_path / "out" / "model.tar.gz")
    with tarfile.open(written) as tar:
        assert tar.getnames() == ["model_algo-1"]
        payload = tar.extractfile("model_algo-1").read()  # type: ignore[union-attr]
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        assert sorted(archive.namelist()) == ["meta.json", "params", "symbol.json"]
        params = mxnet_params.read(archive.read("params"))
        graph = json.loads(archive.read("symbol.json"))
    assert {name: a.shape for name, a in params.items()} == {"arg:v": (D, K), "arg:w1_weight": (D, 1),
                                                            "arg:w0_weight": (1,)}
    assert {node["name"] for node in graph["nodes"] if node["op"] == "null"} == {
        "data", "v", "w1_weight", "w0_weight", "out_label"}
    back = artifact.load(written)
    assert back.predictor_type == "regressor"
    np.testing.assert_array_equal(back.predict_scores(X), model.predict_scores(X))


def test_export_command(tmp_path: Path) -> None:
    model = FactorizationMachines.from_artifact({"hyperparameters": {"feature_dim": D, "num_factors": K,
                                                                     "predictor_type": "regressor"}}, weights())
    artifact.save(tmp_path / "ours", model)
    command = [sys.executable, "-m", "container.export_builtin"]
    done = subprocess.run([*command, str(tmp_path / "ours"), str(tmp_path / "b.tar.gz")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "b.tar.gz")
    failed = subprocess.run([*command, str(tmp_path / "nothing"), str(tmp_path / "c.tar.gz")], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, check=False)
    assert failed.returncode == 1 and "No model in" in failed.stderr and not (tmp_path / "c.tar.gz").exists()


def test_mxnet_params_round_trip_and_rejects_bad_bytes() -> None:
    arrays = {"arg:a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([1.5], np.float64)}
    payload = mxnet_params.write(arrays)
    read = mxnet_params.read(payload)
    assert list(read) == list(arrays)
    for name in arrays:
        np.testing.assert_array_equal(read[name], arrays[name])
        assert read[name].dtype == arrays[name].dtype
    with pytest.raises(mxnet_params.ParamsFormatError, match="magic 0x113"):
        mxnet_params.read(struct.pack("<Q", 0x113) + payload[8:])
    with pytest.raises(mxnet_params.ParamsFormatError, match="array 0 has magic 0xf993fac0"):
        mxnet_params.read(payload[:24] + struct.pack("<I", 0xF993FAC0) + payload[28:])
    for cut in (10, 30, 60, len(payload) - 1):
        with pytest.raises(mxnet_params.ParamsFormatError, match="truncated"):
            mxnet_params.read(payload[:cut])
    with pytest.raises(mxnet_params.ParamsFormatError, match="unexpected bytes"):
        mxnet_params.read(payload + b"\0")


def test_row_sparse_arrays_are_read_dense() -> None:
    """Hand-built row_sparse array (stype 1): storage shape (2, 3), rows 0 and 3 of a (4, 3) array."""
    rows = np.array([[1, 2, 3], [4, 5, 6]], np.float32)
    array = (struct.pack("<Iii2qi2qiii", mxnet_params.V2_MAGIC, 1, 2, 2, 3, 2, 4, 3, 1, 0, 0)
             + struct.pack("<ii1q", 6, 1, 2) + rows.tobytes() + np.array([0, 3], np.int64).tobytes())
    payload = struct.pack("<QQQ", 0x112, 0, 1) + array + struct.pack("<QQ", 1, 5) + b"arg:v"
    expected = np.zeros((4, 3), np.float32)
    expected[[0, 3]] = rows
    np.testing.assert_array_equal(mxnet_params.read(payload)["arg:v"], expected)


@pytest.mark.parametrize(("params", "meta_json", "message"), [
    (w1_variant(weights()), meta(d=D + 1), r"params: array 'w1_weight' has shape \(12, 1\), but .*meta\.json says "
                                           "feature_dim=13"),
    (w1_variant(weights()), meta(k=K + 1), r"params: array 'v' has shape \(12, 4\), but .*num_factors=5"),
    ({**w1_variant(weights()), "arg:v": np.zeros((5, 3), np.float32)}, meta(),
     r"params: array 'v' has shape \(5, 3\), which has no feature_dim=12 side"),
    ({**w1_variant(weights()), "arg:extra": np.zeros(3, np.float32)}, meta(),
     "params holds an array 'arg:extra' the built-in FM does not have"),
    ({**w1_variant(weights()), "arg:Linear_Plus_Bias_bias": np.zeros(1, np.float32)}, meta(),
     r"needs exactly one of the arrays \['w0_weight', 'Linear_Plus_Bias_bias'\], has w0_weight and "),
    ({"arg:v": weights()["V"], "arg:w0_weight": np.zeros(1, np.float32)}, meta(), "has none"),
    ({**w1_variant(weights()), "arg:w0_weight": np.zeros(2, np.float32)}, meta(), "'w0_weight' has shape"),
    ({**w1_variant(weights()), "arg:v": np.full((D, K), np.nan, np.float32)}, meta(), "'v' holds NaN"),
    ({**w1_variant(weights()), "arg:v": np.zeros((D, K), np.int32)}, meta(), "'arg:v' is int32"),
    (w1_variant(weights()), meta(predictor_type="multiclass"), "training_parameters.predictor_type is 'multiclass'"),
    (w1_variant(weights()), {"training_parameters": {"feature_dim": "twelve"}}, "feature_dim is 'twelve'"),
    (w1_variant(weights()), {"training_parameters": {}}, "training_parameters.predictor_type is None"),
    (w1_variant(weights()), b"{not json", r"meta\.json is not valid JSON"),
    (mxnet_params.write(w1_variant(weights()))[:-20], meta(), "params: truncated"),
    (b"\x13\x01" + mxnet_params.write(w1_variant(weights()))[2:], meta(), "params: not an MXNet NDArray list file"),
])
def test_wrong_contents_name_the_file_and_the_field(tmp_path: Path, params, meta_json, message: str) -> None:
    (tmp_path / "model_algo-1").write_bytes(model_algo(params, meta_json))
    with pytest.raises(artifact.ArtifactError, match=message) as caught:
        artifact.load(tmp_path)
    assert str(tmp_path / "model_algo-1") in str(caught.value)


def test_missing_members_and_non_zip_payloads(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("symbol.json", "{}")
    (tmp_path / "model_algo-1").write_bytes(buffer.getvalue())
    with pytest.raises(artifact.ArtifactError, match=r"has no params and no meta\.json"):
        artifact.load(tmp_path)
    (tmp_path / "model_algo-1").write_bytes(b"not a zip")
    with pytest.raises(artifact.ArtifactError, match="model_algo-1 as a zip archive"):
        artifact.load(tmp_path)


@pytest.mark.parametrize("name", ["../params", "/etc/meta.json", "a/../../x", "..\\evil"])
def test_zip_with_path_traversal_is_refused(tmp_path: Path, name: str) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model_algo-1").write_bytes(model_algo(w1_variant(weights()), meta(), extra={name: b"x"}))
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(artifact.ArtifactError, match=r"model_algo-1 has a member .* nothing was extracted"):
        artifact.load(model_dir)
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize("name", ["../model_algo-1", "/tmp/model_algo-1", "./../x"])
def test_tar_with_path_traversal_is_refused(tmp_path: Path, name: str) -> None:
    payload = model_algo(w1_variant(weights()), meta())
    packed = tarball(tmp_path / "model.tar.gz", {"model_algo-1": payload, name: b"x"})
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(artifact.ArtifactError, match=r"model\.tar\.gz has a member .* nothing was extracted"):
        artifact.load(packed)
    assert sorted(tmp_path.rglob("*")) == before


def test_tar_with_a_link_out_is_refused(tmp_path: Path) -> None:
    packed = tmp_path / "model.tar.gz"
    with tarfile.open(packed, "w:gz") as tar:
        link = tarfile.TarInfo("model_algo-1")
        link.type, link.linkname = tarfile.SYMTYPE, "../../etc/passwd"
        tar.addfile(link)
    with pytest.raises(artifact.ArtifactError, match=r"a link to '\.\./\.\./etc/passwd'"):
        artifact.load(packed)


def test_oversized_members_are_refused_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(builtin_fm.LIMITS, "*", 100)
    (tmp_path / "model_algo-1").write_bytes(model_algo(w1_variant(weights()), meta()))
    with pytest.raises(artifact.ArtifactError, match=r"member 'params' is \d+ bytes, more than the 100"):
        artifact.load(tmp_path)


def test_several_hosts_models_without_model_algo_1_are_ambiguous(tmp_path: Path) -> None:
    payload = model_algo(w1_variant(weights()), meta())
    (tmp_path / "model_algo-2").write_bytes(payload)
    assert artifact.read(tmp_path)[0]["feature_dim"] == D  # the only one is taken
    (tmp_path / "model_algo-3").write_bytes(payload)
    with pytest.raises(artifact.ArtifactError, match="several built-in models"):
        artifact.read(tmp_path)
