"""Inputs the decoders' fuzzer (bench/fuzz/) found, each minimised, with the user error it must now raise."""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import orjson
import pytest

from algorithm import artifact
from algorithm.artifact import ArtifactError
from container.errors import DataError
from container.formats.fm_queries import query_instances, read_queries
from container.formats.registry import JSON
from container.formats.triplets import decode_id_weights_csv


@pytest.mark.parametrize("body", [b"\r\t", b"3,1\r4,2\n", b"id,weight\n1,2\r\n3,4\r5,6\n"])
def test_id_weights_with_a_bare_carriage_return_name_the_line(body: bytes) -> None:
    # Python's csv module raised csv.Error ("new-line character seen in unquoted field") out of the decoder.
    with pytest.raises(DataError, match=r"^w\.csv: line \d+: new-line character seen in unquoted field"):
        decode_id_weights_csv(body, source="w.csv", what="row")


@pytest.mark.parametrize(("ids", "shown"), [
    ([[], 1], "[]"),  # numpy raised ValueError on lists of different lengths inside
    ([2**63], "[9223372036854775808]"),  # read as uint64 and wrapped to a negative id
])
def test_top_k_ids_that_are_not_64_bit_integers_name_the_field(ids: list, shown: str) -> None:
    body = orjson.dumps({"queries": [{"candidates": {"ids": ids}}]})
    instances = query_instances(body, JSON)
    assert instances is not None
    with pytest.raises(DataError, match=re.escape(f"query 0: field 'candidates.ids' must be a list of 64-bit "
                                                  f"integers, got {shown}")):
        read_queries(instances, feature_dim=8)


def _zip(compression: int = zipfile.ZIP_STORED) -> bytearray:
    """A one-member zip (an npz holding array "w") to damage."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        archive.writestr("w.npy", b"\x93NUMPY" + bytes(200))
    return bytearray(buffer.getvalue())


def _central(zip_bytes: bytearray) -> int:
    return zip_bytes.index(b"PK\x01\x02")


def _encrypted() -> bytes:  # zipfile: RuntimeError "File 'w.npy' is encrypted"
    data = _zip()
    data[6] |= 1
    data[_central(data) + 8] |= 1
    return bytes(data)


def _unsupported_version() -> bytes:  # zipfile: NotImplementedError "zip file version 7.5"
    data = _zip()
    data[_central(data) + 6] = 75
    return bytes(data)


def _bad_deflate() -> bytes:  # zipfile: zlib.error while inflating
    data = _zip(zipfile.ZIP_DEFLATED)
    data[30 + len("w.npy")] = 0xFF  # the first byte of the deflate stream: an invalid block type
    return bytes(data)


def _name_not_utf8() -> bytes:  # zipfile: UnicodeDecodeError on a name flagged as UTF-8
    data = _zip()
    for flags_high_byte, name in ((7, 30), (_central(data) + 9, _central(data) + 46)):
        data[flags_high_byte] |= 0x08  # general purpose flag bit 11 (0x800): the name is UTF-8
        data[name] = 0xFF
    return bytes(data)


def _bad_crc() -> bytes:  # zipfile: BadZipFile "Bad CRC-32"
    data = _zip()
    data[_central(data) - 1] ^= 0xFF  # the stored array's last byte
    return bytes(data)


DAMAGED_ZIPS = {"truncated": bytes(_zip()[:-10]), "encrypted": _encrypted(),
                "unsupported version": _unsupported_version(), "bad deflate data": _bad_deflate(),
                "name not UTF-8": _name_not_utf8()}


@pytest.mark.parametrize("name", sorted(DAMAGED_ZIPS))
def test_a_damaged_model_npz_is_an_artifact_error_naming_the_file(tmp_path: Path, name: str) -> None:
    (tmp_path / "model.json").write_text('{"format_version": 1}')
    (tmp_path / "model.npz").write_bytes(DAMAGED_ZIPS[name])
    expected = f"^model.npz in {re.escape(str(tmp_path))} cannot be read \\(truncated or corrupt\\): "
    with pytest.raises(ArtifactError, match=expected):
        artifact.load(tmp_path)


@pytest.mark.parametrize("name", sorted(DAMAGED_ZIPS))
def test_a_damaged_builtin_model_is_an_artifact_error_naming_the_file(tmp_path: Path, name: str) -> None:
    (tmp_path / "model_algo-1").write_bytes(DAMAGED_ZIPS[name])
    with pytest.raises(ArtifactError, match=f"Cannot read {re.escape(str(tmp_path / 'model_algo-1'))} as a zip"):
        artifact.load(tmp_path)


def test_a_damaged_member_of_a_model_npz_fails_its_crc(tmp_path: Path) -> None:
    (tmp_path / "model.json").write_text('{"format_version": 1}')
    (tmp_path / "model.npz").write_bytes(_bad_crc())
    with pytest.raises(ArtifactError, match=re.escape("corrupt): BadZipFile: Bad CRC-32 for file 'w.npy'")):
        artifact.load(tmp_path)


@pytest.mark.parametrize("body", [
    # the fuzzer's minimised model_algo-1 files: a central directory entry only, name bytes not UTF-8 (zipfile:
    # UnicodeDecodeError), and one whose member offset points before the file (ValueError: negative seek value)
    b"PK\x01\x02-\x03-\x00\x00Z+\x08\x1e\xacJ\x11<\xa8\x84e\xb2;\x9bl\xbb\xbb\xb3\xcel\x92\xa6%\xe2\x7f\xa0\xe2A\xf0"
    b"bA\x11\xc1\x9b\x1e\xad\x89g\x8f\x82\xe0Q\xc1\x8b\x17\x8f^\x04uf\x7f\xa4\x9b\xa0\"\xf5G\x0f\xce\xa7\x90\xdd|"
    b"\xdf\x9by\xf3\xde\xbc\xcc\xd4C\x16t\x8bK\x04\xf9\xc2_C\xa6\x94K\xa5\xe8I\x19}\xaaJEK\xdf\x13\xbdR)i\x82l_fa"
    b"ctors.npzPK\x05\x06\x00\x00\x00\x00\x02\x00\x02\x00z\x00\x00\x00nn\":\n}",
    b"PK\x01\x02-\x03-\x00\x00\x00\x00\x00\x00\x00!\x00\xa3\xfb\x06\xbc\xa8\x00\x00\x00\xa8\x00\x00\x00\x0f\x00\x00"
    b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80\x01\x00\x00\x00\x00row]factnrs.npiPK\x01\x02-\x03-\x00\x00\x00\x00"
    b"\x00\x00\x00!\x00iud3\xa0\x80\x00\x00\xa0\x00\x00\x00\x0f\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80\x01"
    b"\xe9\x00\x00\x00col_factors.npyPK\x05\x06\x00\x00\x00\x00\x02\x00\x02\x00z\x00\x00\x00n\":\n}\n",
], ids=["name not UTF-8", "negative seek"])
def test_fuzzed_builtin_models_are_artifact_errors(tmp_path: Path, body: bytes) -> None:
    (tmp_path / "model_algo-1").write_bytes(body)
    with pytest.raises(ArtifactError, match="as a zip archive"):
        artifact.load(tmp_path)


def _npz(**members: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, payload in members.items():
            archive.writestr(name, payload)
    return buffer.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


W = {"w.npy": _npy(np.zeros(3, np.float32))}
W_META = {"format_version": 1, "arrays": {"w": {"shape": [3], "dtype": "float32"}}}


@pytest.mark.parametrize(("meta", "members", "message"), [
    # numpy gives the bytes of a member not named .npy: AttributeError 'bytes' object has no attribute 'shape'
    ({"format_version": 1, "arrays": {"w": {}}}, {"w": b"raw"}, "model.npz in .* holds 'w', which is not a .npy array"),
    # AttributeError: 'int' object has no attribute 'get'
    ({"format_version": 1, "arrays": {"w": 5}}, W, "describes array 'w' as 5, not as"),
    ({**W_META, "checksum": "x"}, W, "model.json in .* has no valid checksum for model.npz"),
    # TypeError: unhashable type: 'list'
    ({**W_META, "checksum": {"over": [["w"]], "sha256": ""}}, W, "has no valid checksum for model.npz"),
    # tokenize.TokenError from numpy reading a .npy header with an unclosed parenthesis
    (W_META, {"w.npy": b"\x93NUMPY\x01\x00\x36\x00{'descr': '<f4', 'fortran_order': False, 'shape': (3,\n"
              + bytes(12)}, "model.npz in .* cannot be read .*EOF in multi-line statement"),
], ids=["member not .npy", "array description not an object", "checksum not an object", "checksum over lists",
        "npy header unclosed"])
def test_fuzzed_model_files_are_artifact_errors(tmp_path: Path, meta: dict, members: dict, message: str) -> None:
    (tmp_path / "model.json").write_text(json.dumps(meta))
    (tmp_path / "model.npz").write_bytes(_npz(**members))
    with pytest.raises(ArtifactError, match=message):
        artifact.load(tmp_path)


def test_an_algorithm_that_is_not_a_string_is_an_artifact_error(tmp_path: Path) -> None:
    # TypeError: unhashable type: 'list', looking {"algorithm": [[]]} up among the model classes
    weights = np.zeros(3, np.float32)
    sha256 = artifact.checksum({"w": weights}, ["w"])
    meta = {**W_META, "algorithm": [[]], "checksum": {"over": ["w"], "sha256": sha256}}
    (tmp_path / "model.json").write_text(json.dumps(meta))
    (tmp_path / "model.npz").write_bytes(_npz(**{"w.npy": _npy(weights)}))
    with pytest.raises(ArtifactError, match=r"names algorithm \[\[\]\]; known: \['fm', 'wals'\]"):
        artifact.load(tmp_path)
