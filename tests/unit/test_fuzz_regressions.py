"""Inputs the decoders' fuzzer (bench/fuzz/) found, each minimised, with the user error it must now raise."""

from __future__ import annotations

import pytest

from container.errors import DataError
from container.formats.triplets import decode_id_weights_csv


@pytest.mark.parametrize("body", [b"\r\t", b"3,1\r4,2\n", b"id,weight\n1,2\r\n3,4\r5,6\n"])
def test_id_weights_with_a_bare_carriage_return_name_the_line(body: bytes) -> None:
    # Python's csv module raised csv.Error ("new-line character seen in unquoted field") out of the decoder.
    with pytest.raises(DataError, match=r"^w\.csv: line \d+: new-line character seen in unquoted field"):
        decode_id_weights_csv(body, source="w.csv", what="row")
