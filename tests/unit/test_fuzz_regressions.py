"""Inputs the decoders' fuzzer (bench/fuzz/) found, each minimised, with the user error it must now raise."""

from __future__ import annotations

import re

import orjson
import pytest

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
