"""The kernels of a data-parallel FM round against the numpy operations they replace: bit-for-bit equal."""

import numpy as np
import pytest

from algorithm import _replica_kernels as kernels

RANGES = [((0, 40),), ((0, 25), (60, 97)), ((10, 11), (50, 50), (99, 120))]


def _blocks(ranges, columns, rng):
    table = rng.standard_normal((120, 7)).astype(np.float32)
    base = table + rng.standard_normal(table.shape).astype(np.float32) * (rng.random(table.shape) < 0.5)
    n = sum(stop - start for start, stop in ranges)
    return table, base.astype(np.float32), np.array(ranges, np.int64).reshape(-1, 2), n


@pytest.mark.parametrize("ranges", RANGES)
@pytest.mark.parametrize("columns", [3, 7])
def test_changes_are_numpys_gather_and_difference(ranges, columns):
    table, base, pairs, n = _blocks(ranges, columns, np.random.default_rng(0))
    now, base_rows, changes = (np.full((n, columns), np.nan, np.float32) for _ in range(3))
    kernels.take_changes(table, base, pairs, now, base_rows, changes)
    expected_now = np.concatenate([table[a:b, :columns] for a, b in ranges])
    expected_base = np.concatenate([base[a:b, :columns] for a, b in ranges])
    assert np.array_equal(now, expected_now) and np.array_equal(base_rows, expected_base)
    assert np.array_equal(changes, np.subtract(expected_now, expected_base))


@pytest.mark.parametrize("ranges", RANGES)
@pytest.mark.parametrize("columns", [3, 7])
def test_a_combination_is_put_back_as_numpy_would(ranges, columns):
    rng = np.random.default_rng(1)
    table, base, pairs, n = _blocks(ranges, columns, rng)
    sent = np.concatenate([table[a:b, :columns] for a, b in ranges])
    trained = rng.random(table.shape) < 0.5
    table[trained] += np.float32(0.125)  # trained on since it was sent, in some places
    combined = rng.standard_normal((n, columns)).astype(np.float32)
    expected_table, expected_base = table.copy(), base.copy()
    offset = 0
    for a, b in ranges:
        block = expected_table[a:b, :columns]
        block -= sent[offset:offset + b - a]
        block += combined[offset:offset + b - a]
        expected_base[a:b, :columns] = combined[offset:offset + b - a]
        offset += b - a
    kernels.apply_combination(table, base, pairs, sent, combined)
    assert np.array_equal(table, expected_table) and np.array_equal(base, expected_base)
    untouched = np.concatenate([~trained[a:b, :columns] for a, b in ranges])
    block = np.concatenate([table[a:b, :columns] for a, b in ranges])
    assert untouched.any() and np.array_equal(block[untouched], combined[untouched])  # exactly the combination
