"""Numba kernel that decodes RecordIO-protobuf ``Record`` messages straight from the bytes, in one pass.

The reader walks the protobuf wire format the way protobuf's own parser (upb) does: any field order,
packed and non-packed repeated fields, unknown fields skipped, the last map entry for a key wins and a map
entry holding an unknown field is dropped. Every read is bounds-checked against the enclosing message and
every write against the output arrays, so bad bytes give a status code, never a crash. Cases it does not
handle (multi-part records, groups, a sub-message protobuf would merge from several pieces) return
``FALLBACK`` and the caller uses the protobuf library instead.

Results and errors go through ``status`` (int64[6]): code, record index, record byte offset, a, b, c.

Array indices are cast to uint64 (``buf[np.uint64(p)]``): numba wraps negative signed indices around, and
that per-access check otherwise blocks vectorization and doubles the time of the byte loops. Every such
index is already known to be in bounds.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from container.formats.recordio_framing import LENGTH_MASK, MAGIC

# Status codes (the messages live in recordio.py).
OK = 0
FALLBACK = 1
GROW = 2  # the output arrays are too small: call again with larger ones
TRUNCATED_HEADER = 3  # a: bytes left
BAD_MAGIC = 4  # a: the word found
TRUNCATED_PAYLOAD = 5  # a: declared length, b: bytes left
MALFORMED = 6
NO_TENSOR = 7  # a: which tensor (FEATURES / LABEL / WEIGHT)
BYTES_TENSOR = 8  # a: which
SHAPE_TOO_LARGE = 9
KEYS_VALUES_MISMATCH = 10  # a: keys, b: values
NO_SHAPE = 11
KEY_GE_SHAPE = 12  # a: key, b: shape product
KEY_GE_DIM = 13  # a: key, b: feature_dim
DENSE_SHAPE_MISMATCH = 14  # a: values, b: shape product
DENSE_WIDTH_DIM = 15  # a: values, b: feature_dim
RAGGED = 16  # a: values, b: expected, c: first dense record
FEATURE_NOT_FINITE = 17  # a: column
NOT_SCALAR = 18  # a: which, b: values, c: keys
NOT_FINITE = 19  # a: which
NEGATIVE_WEIGHT = 20

# Which tensor a code refers to; also its slot in ``loc``.
FEATURES = 0
LABEL = 1
WEIGHT = 2

# Tensor kinds, by Value field number: float32_tensor = 2, float64_tensor = 3, int32_tensor = 7, bytes = 9.
F32 = 0
F64 = 1
I32 = 2
BYTES = 3
NO_VALUE = -2  # the map entry exists but its Value holds no tensor
ABSENT = -1  # no map entry with that key

# A tensor's description: SLOT int64s at loc[SLOT * which].
KIND = 0
START = 1
END = 2
N_VALUES = 3
N_KEYS = 4
N_SHAPE = 5
WIDTH = 6  # the product of shape
LAZY_KEYS = 7  # 1 if packed keys were only counted, not checked: the decoder checks them
SLOT = 8

MAX_WIDTH = 1 << 62
MIN_RECORD_BYTES = 24  # header + the smallest payload with a features tensor, padded


@njit(cache=True)
def _varint(buf, p, e):
    """(value, next position) of the varint at ``p``; next position -1 if truncated or over 10 bytes.

    The value keeps the low 64 bits in an int64, so uint64 values >= 2**63 come out negative.
    """
    if p < e and buf[np.uint64(p)] < 0x80:
        return np.int64(buf[np.uint64(p)]), p + 1
    v = np.int64(0)
    shift = 0
    while p < e and shift < 70:
        b = np.int64(buf[np.uint64(p)])
        p += 1
        v |= (b & 0x7F) << shift
        if b < 0x80:
            return v, p
        shift += 7
    return v, -1


@njit(cache=True)
def _tag(buf, p, e):
    """(field number, wire type, next position); next position -1 for a tag protobuf rejects."""
    v, q = _varint(buf, p, e)
    if q < 0 or q - p > 5 or v > 0xFFFFFFFF or (v >> 3) == 0:
        return 0, 0, -1
    return v >> 3, v & 7, q


@njit(cache=True)
def _skip(buf, p, e, wire_type):
    """Position after a field's payload; -1 if malformed, -2 for groups (left to the protobuf library)."""
    if wire_type == 0:
        _, q = _varint(buf, p, e)
        return q
    if wire_type == 1:
        return p + 8 if e - p >= 8 else -1
    if wire_type == 2:
        n, q = _varint(buf, p, e)
        if q < 0 or n < 0 or n > e - q:
            return -1
        return q + n
    if wire_type == 5:
        return p + 4 if e - p >= 4 else -1
    if wire_type == 3 or wire_type == 4:
        return -2
    return -1


@njit(cache=True)
def _count_varints(buf, s, e):
    """Number of varints packed in buf[s:e]; -1 unless they end exactly at ``e`` and each is <= 10 bytes."""
    count = 0
    run = 0
    too_long = False
    for p in range(s, e):
        more = buf[np.uint64(p)] >> 7
        count += 1 - more
        run = (run + 1) * more
        too_long |= run == 10
    return -1 if too_long or run != 0 else count


@njit(cache=True)
def _count_terminators(buf, s, e):
    """Number of varints packed in buf[s:e] if each is <= 10 bytes; -1 unless the last one ends at ``e``.

    The length limit is left to whoever decodes them (``_decode_keys``): this loop vectorizes.
    """
    if e > s and buf[np.uint64(e - 1)] >= 0x80:
        return -1
    more = 0
    for p in range(s, e):
        more += buf[np.uint64(p)] >> 7
    return (e - s) - more


@njit(cache=True)
def _walk_tensor(buf, s, e, kind, res, lazy_keys):
    """Validate a Float32/Float64/Int32Tensor; res[N_VALUES:] = values, keys, shape length, shape
    product (-1 above MAX_WIDTH) and ``lazy_keys``: with it, packed keys are counted but their varint
    lengths are left to ``_decode_keys``. Returns a status code."""
    width = 8 if kind == F64 else 4
    n_values = 0
    n_keys = 0
    n_shape = 0
    product = 1
    has_zero = False
    p = s
    while p < e:
        field, wt, p = _tag(buf, p, e)
        if p < 0:
            return MALFORMED
        if field == 1 and wt == 2:
            n, q = _varint(buf, p, e)
            if q < 0 or n < 0 or n > e - q:
                return MALFORMED
            if kind == I32:
                c = _count_varints(buf, q, q + n)
                if c < 0:
                    return MALFORMED
                n_values += c
            elif n % width != 0:
                return MALFORMED
            else:
                n_values += n // width
            p = q + n
        elif field == 1 and ((kind == F32 and wt == 5) or (kind == F64 and wt == 1) or (kind == I32 and wt == 0)):
            n_values += 1
            p = _skip(buf, p, e, wt)
        elif (field == 2 or field == 3) and (wt == 0 or wt == 2):
            if wt == 2:
                n, q = _varint(buf, p, e)
                if q < 0 or n < 0 or n > e - q:
                    return MALFORMED
                end = q + n
                count = _count_terminators(buf, q, end) if field == 2 and lazy_keys else _count_varints(buf, q, end)
            else:
                q = p
                _, end = _varint(buf, p, e)
                count = 1
            if count < 0 or end < 0:
                return MALFORMED
            if field == 2:
                n_keys += count
            else:
                n_shape += count
                while q < end:
                    dim, q = _varint(buf, q, end)
                    if dim == 0:
                        has_zero = True
                    elif product > 0:
                        product = -1 if dim < 0 or dim > MAX_WIDTH // product else product * dim
            p = end
        else:
            p = _skip(buf, p, e, wt)
        if p == -2:
            return FALLBACK
        if p < 0:
            return MALFORMED
    res[N_VALUES] = n_values
    res[N_KEYS] = n_keys
    res[N_SHAPE] = n_shape
    res[WIDTH] = 0 if has_zero else product
    res[LAZY_KEYS] = lazy_keys
    return OK


@njit(cache=True)
def _walk_plain(buf, s, e):
    """Validate a message whose fields need no interpretation (Bytes): tags and lengths only."""
    p = s
    while p < e:
        _, wt, p = _tag(buf, p, e)
        if p < 0:
            return MALFORMED
        p = _skip(buf, p, e, wt)
        if p == -2:
            return FALLBACK
        if p < 0:
            return MALFORMED
    return OK


@njit(cache=True)
def _walk_value(buf, s, e, res, lazy_keys):
    """Validate a Value; res[:SLOT] describes its tensor (KIND = NO_VALUE if the oneof is unset)."""
    res[KIND] = NO_VALUE
    last_field = 0
    run = 0
    p = s
    while p < e:
        field, wt, p = _tag(buf, p, e)
        if p < 0:
            return MALFORMED
        if wt == 2 and (field == 2 or field == 3 or field == 7 or field == 9):
            n, q = _varint(buf, p, e)
            if q < 0 or n < 0 or n > e - q:
                return MALFORMED
            run = run + 1 if field == last_field else 1
            last_field = field
            if res[KIND] >= 0 and res[LAZY_KEYS]:  # a replaced oneof member: check it as protobuf does
                code = _walk_tensor(buf, res[START], res[END], res[KIND], res, False)
                if code != OK:
                    return code
            kind = BYTES if field == 9 else (F32 if field == 2 else (F64 if field == 3 else I32))
            res[KIND] = kind
            res[START] = q
            res[END] = q + n
            if kind == BYTES:
                res[N_VALUES:SLOT] = 0
                code = _walk_plain(buf, q, q + n)
            else:
                code = _walk_tensor(buf, q, q + n, kind, res, lazy_keys)
            if code != OK:
                return code
            p = q + n
        else:
            p = _skip(buf, p, e, wt)
            if p == -2:
                return FALLBACK
            if p < 0:
                return MALFORMED
    return FALLBACK if run > 1 else OK  # protobuf merges repeated pieces of the same oneof message


@njit(cache=True)
def _key_is(buf, s, e, name):
    if e - s != len(name):
        return False
    for i in range(e - s):  # noqa: SIM110 (numba compiles no generator expressions)
        if buf[np.uint64(s + i)] != name[i]:
            return False
    return True


_VALUES = np.frombuffer(b"values", dtype=np.uint8)
_WEIGHT = np.frombuffer(b"weight", dtype=np.uint8)


@njit(cache=True)
def _walk_entry(buf, s, e, is_label, loc, res):
    """Validate a map<string, Value> entry; copy its Value's description to loc if its key is one we read.

    A first look at the entry's own fields finds its key, so that the keys of the features tensor (the
    bulk of the data) are checked once, while being decoded, rather than twice.
    """
    key_s = 0
    key_e = 0
    n_value_fields = 0
    has_unknown = False
    p = s
    while p < e:
        field, wt, q = _tag(buf, p, e)
        if q < 0:
            return MALFORMED
        if field == 1 and wt == 2:
            n, key_s = _varint(buf, q, e)
            key_e = key_s + n
        n_value_fields += field == 2 and wt == 2
        has_unknown |= not ((field == 1 or field == 2) and wt == 2)
        p = _skip(buf, q, e, wt)
        if p == -2:
            return FALLBACK
        if p < 0:
            return MALFORMED
    if has_unknown:
        base = -1  # protobuf moves such an entry to the unknown fields: it is not in the map
    elif _key_is(buf, key_s, key_e, _VALUES):
        base = SLOT * LABEL if is_label else SLOT * FEATURES
    elif is_label and _key_is(buf, key_s, key_e, _WEIGHT):
        base = SLOT * WEIGHT
    else:
        base = -1  # an entry we do not read
    if base >= 0 and n_value_fields > 1:
        return FALLBACK  # protobuf merges the pieces
    res[KIND] = NO_VALUE
    p = s
    while p < e:
        field, wt, p = _tag(buf, p, e)
        n, q = _varint(buf, p, e) if wt == 2 else (0, p)
        if field == 2 and wt == 2:
            code = _walk_value(buf, q, q + n, res, base == SLOT * FEATURES)
            if code != OK:
                return code
        p = _skip(buf, p, e, wt)
    if base == SLOT * FEATURES and loc[KIND] >= 0 and loc[LAZY_KEYS]:
        # an earlier features['values'] is replaced: check its keys as protobuf does (it parses a member
        # before a later one replaces it)
        code = _walk_tensor(buf, loc[START], loc[END], loc[KIND], loc, False)
        if code != OK:
            return code
    if base >= 0:
        loc[base : base + SLOT] = res
    return OK


@njit(cache=True)
def _walk_record(buf, s, e, loc, res):
    """Validate the Record in buf[s:e]; loc gets features['values'], label['values'], label['weight']."""
    for base in range(0, 3 * SLOT, SLOT):
        loc[base + KIND] = ABSENT
        loc[base + LAZY_KEYS] = 0
    p = s
    while p < e:
        field, wt, p = _tag(buf, p, e)
        if p < 0:
            return MALFORMED
        if (field == 1 or field == 2) and wt == 2:
            n, q = _varint(buf, p, e)
            if q < 0 or n < 0 or n > e - q:
                return MALFORMED
            code = _walk_entry(buf, q, q + n, field == 2, loc, res)
            if code != OK:
                return code
            p = q + n
        else:
            p = _skip(buf, p, e, wt)
            if p == -2:
                return FALLBACK
            if p < 0:
                return MALFORMED
    return OK


@njit(cache=True)
def _frame(buf, p, framed, status):
    """(payload start, payload end, next record position) of the record at p; (-1, -1, -1) on error."""
    n = len(buf)
    if not framed:
        return 0, n, n
    if n - p < 8:
        status[0] = TRUNCATED_HEADER
        status[3] = n - p
        return -1, -1, -1
    magic = (
        np.int64(buf[np.uint64(p)]) | (np.int64(buf[np.uint64(p + 1)]) << 8) | (np.int64(buf[np.uint64(p + 2)]) << 16)
    )
    magic |= np.int64(buf[np.uint64(p + 3)]) << 24
    if magic != MAGIC:
        status[0] = BAD_MAGIC
        status[3] = magic
        return -1, -1, -1
    lrec = (
        np.int64(buf[np.uint64(p + 4)])
        | (np.int64(buf[np.uint64(p + 5)]) << 8)
        | (np.int64(buf[np.uint64(p + 6)]) << 16)
    )
    lrec |= np.int64(buf[np.uint64(p + 7)]) << 24
    if lrec >> 29 != 0:
        status[0] = FALLBACK
        return -1, -1, -1
    length = lrec & LENGTH_MASK
    if length > n - p - 8:
        status[0] = TRUNCATED_PAYLOAD
        status[3] = length
        status[4] = n - p - 8
        return -1, -1, -1
    s = p + 8
    return s, s + length, min(n, s + ((length + 3) & ~3))


@njit(cache=True)
def _copy_values(buf, t, kind, out, out_bits, at, scratch, scratch_bits):
    """Write the values of tensor ``t`` (a loc slice), cast to float32, to out[at:]."""
    j = at
    p = t[START]
    e = t[END]
    while p < e:
        field, wt, p = _tag(buf, p, e)
        lo = p
        if field == 1 and wt == 2:
            n, lo = _varint(buf, p, e)
            p = lo + n
        else:
            p = _skip(buf, p, e, wt)
            if field != 1 or wt != (5 if kind == F32 else (1 if kind == F64 else 0)):
                continue  # not a value: an unknown field to protobuf
        if kind == F32:
            for q in range(lo, p, 4):
                out_bits[np.uint64(j)] = (
                    np.uint32(buf[np.uint64(q)])
                    | (np.uint32(buf[np.uint64(q + 1)]) << 8)
                    | (np.uint32(buf[np.uint64(q + 2)]) << 16)
                    | (np.uint32(buf[np.uint64(q + 3)]) << 24)
                )
                j += 1
        elif kind == F64:
            for q in range(lo, p, 8):
                bits = np.uint64(0)
                for b in range(8):
                    bits |= np.uint64(buf[np.uint64(q + b)]) << np.uint64(8 * b)
                scratch_bits[0] = bits
                out[np.uint64(j)] = np.float32(scratch[0])
                j += 1
        else:
            q = lo
            while q < p:
                v, q = _varint(buf, q, p)
                v &= 0xFFFFFFFF
                out[np.uint64(j)] = np.float32(v - (1 << 32) if v >= (1 << 31) else v)
                j += 1


@njit(cache=True)
def _decode_keys(buf, t, out, at):
    """Write the keys of tensor ``t`` (a loc slice) to out[at:] (never past its end); returns how many,
    or -1 if a packed varint is longer than 10 bytes (which ``_count_terminators`` let through)."""
    j = at
    p = t[START]
    e = t[END]
    limit = len(out)
    while p < e:
        field, wt, p = _tag(buf, p, e)
        if field == 2 and (wt == 2 or wt == 0):
            q = p
            if wt == 2:
                n, q = _varint(buf, p, e)
                p = q + n
            else:
                _, p = _varint(buf, p, e)
            while q < p:
                b = np.int64(buf[np.uint64(q)])
                if b < 0x80:
                    v = b
                    q += 1
                elif q + 1 < p and buf[np.uint64(q + 1)] < 0x80:
                    v = (b & 0x7F) | (np.int64(buf[np.uint64(q + 1)]) << 7)
                    q += 2
                elif q + 2 < p and buf[np.uint64(q + 2)] < 0x80:
                    v = (
                        (b & 0x7F)
                        | ((np.int64(buf[np.uint64(q + 1)]) & 0x7F) << 7)
                        | (np.int64(buf[np.uint64(q + 2)]) << 14)
                    )
                    q += 3
                else:
                    v, q = _varint(buf, q, p)
                    if q < 0:
                        return -1
                if j < limit:
                    out[np.uint64(j)] = v
                j += 1
        else:
            p = _skip(buf, p, e, wt)
    return j - at


@njit(cache=True)
def _scalar(buf, t, which, out, out_bits, i, scratch, scratch_bits, status):
    """Read the one-value tensor ``t`` (label or weight) into out[i]; False after setting status."""
    if t[KIND] == ABSENT or t[KIND] == NO_VALUE:
        status[0] = NO_TENSOR
        status[3] = which
        return False
    if t[KIND] == BYTES:
        status[0] = BYTES_TENSOR
        status[3] = which
        return False
    if t[N_VALUES] != 1 or t[N_KEYS] != 0:
        status[0] = NOT_SCALAR
        status[3] = which
        status[4] = t[N_VALUES]
        status[5] = t[N_KEYS]
        return False
    _copy_values(buf, t, t[KIND], out, out_bits, i, scratch, scratch_bits)
    if not np.isfinite(out[np.uint64(i)]):
        status[0] = NOT_FINITE
        status[3] = which
        return False
    return True


@njit(cache=True)
def _features(buf, t, feature_dim, dense, i, data, data_bits, indices, nnz, scratch, scratch_bits, status):
    """Decode features tensor ``t`` of record i into data/indices from nnz (dense zeros dropped); returns
    the new nnz and the row's width, or (-1, 0) after setting status. ``dense`` holds the width of the
    first dense row and its record index (-1 before one is seen)."""
    kind = t[KIND]
    if kind in (ABSENT, NO_VALUE, BYTES):
        status[0] = NO_TENSOR if kind != BYTES else BYTES_TENSOR
        status[3] = FEATURES
        return -1, 0
    n = t[N_VALUES]
    n_keys = t[N_KEYS]
    has_shape = t[N_SHAPE] > 0
    declared = t[WIDTH]
    if nnz + max(n, n_keys) > len(data):
        status[0] = GROW
        return -1, 0
    if n_keys > 0 and _decode_keys(buf, t, indices, nnz) < 0:
        status[0] = MALFORMED
        return -1, 0
    if has_shape and declared < 0:
        status[0] = SHAPE_TOO_LARGE
        return -1, 0
    _copy_values(buf, t, kind, data, data_bits, nnz, scratch, scratch_bits)
    if n_keys > 0:
        if n_keys != n:
            status[0] = KEYS_VALUES_MISMATCH
            status[3] = n_keys
            status[4] = n
            return -1, 0
        if not has_shape and feature_dim < 0:
            status[0] = NO_SHAPE
            return -1, 0
        for j in range(nnz, nnz + n):
            key = indices[np.uint64(j)]
            if has_shape and (key < 0 or key >= declared):
                status[0] = KEY_GE_SHAPE
                status[3] = key
                status[4] = declared
                return -1, 0
            if feature_dim >= 0 and (key < 0 or key >= feature_dim):
                status[0] = KEY_GE_DIM
                status[3] = key
                status[4] = feature_dim
                return -1, 0
        for j in range(nnz, nnz + n):
            if not np.isfinite(data[np.uint64(j)]):
                status[0] = FEATURE_NOT_FINITE
                status[3] = indices[np.uint64(j)]
                return -1, 0
        return nnz + n, declared if has_shape else feature_dim
    if n == 0 and has_shape:
        return nnz, declared  # an all-zero sparse row
    if has_shape and declared != n:
        status[0] = DENSE_SHAPE_MISMATCH
        status[3] = n
        status[4] = declared
        return -1, 0
    if feature_dim >= 0 and n != feature_dim:
        status[0] = DENSE_WIDTH_DIM
        status[3] = n
        status[4] = feature_dim
        return -1, 0
    if dense[0] < 0:
        dense[0] = n
        dense[1] = i
    elif n != dense[0]:
        status[0] = RAGGED
        status[3] = n
        status[4] = dense[0]
        status[5] = dense[1]
        return -1, 0
    w = nnz
    for j in range(n):
        x = data[np.uint64(nnz + j)]
        if not np.isfinite(x):
            status[0] = FEATURE_NOT_FINITE
            status[3] = j
            return -1, 0
        if x != 0:
            data[np.uint64(w)] = x
            indices[np.uint64(w)] = j
            w += 1
    return w, n


@njit(cache=True)
def decode_records(buf, framed, with_labels, feature_dim, data, indices, indptr, labels, weights, status):
    """Decode every record into CSR arrays (capacities: their lengths), labels and weights when
    ``with_labels``. ``feature_dim`` < 0 means unknown. Returns (rows, n_cols, any weight seen)."""
    loc = np.empty(3 * SLOT, np.int64)
    res = np.empty(SLOT, np.int64)
    data_bits = data.view(np.uint32)
    label_bits = labels.view(np.uint32)
    weight_bits = weights.view(np.uint32)
    scratch = np.empty(1, np.float64)
    scratch_bits = scratch.view(np.uint64)
    features = loc[SLOT * FEATURES : SLOT * FEATURES + SLOT]
    label = loc[SLOT * LABEL : SLOT * LABEL + SLOT]
    weight = loc[SLOT * WEIGHT : SLOT * WEIGHT + SLOT]
    n_cols = max(feature_dim, 0)
    dense = np.full(2, -1, np.int64)
    any_weight = False
    nnz = 0
    indptr[0] = 0
    i = 0
    p = 0
    while p < len(buf) or (not framed and i == 0):
        status[1] = i
        status[2] = p
        if i + 1 >= len(indptr) or (with_labels and i >= len(labels)):
            status[0] = GROW
            return i, n_cols, any_weight
        s, e, p = _frame(buf, p, framed, status)
        if s < 0:
            return i, n_cols, any_weight
        code = _walk_record(buf, s, e, loc, res)
        if code != OK:
            status[0] = code
            return i, n_cols, any_weight
        nnz, width = _features(
            buf, features, feature_dim, dense, i, data, data_bits, indices, nnz, scratch, scratch_bits, status
        )
        if nnz < 0:
            return i, n_cols, any_weight
        if feature_dim < 0 and width > n_cols:
            n_cols = width
        indptr[i + 1] = nnz
        if with_labels:
            if not _scalar(buf, label, LABEL, labels, label_bits, i, scratch, scratch_bits, status):
                return i, n_cols, any_weight
            if weight[KIND] == ABSENT:
                weights[i] = 1.0
            else:
                any_weight = True
                if not _scalar(buf, weight, WEIGHT, weights, weight_bits, i, scratch, scratch_bits, status):
                    return i, n_cols, any_weight
                if weights[i] < 0:
                    status[0] = NEGATIVE_WEIGHT
                    return i, n_cols, any_weight
        i += 1
    status[0] = OK
    return i, n_cols, any_weight
