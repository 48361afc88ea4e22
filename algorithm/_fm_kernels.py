"""numba kernels of the second-order Factorization Machine: score rows, train one epoch.

Model (libFM's O(k·nnz) form, per row x):
    z = w0 + Σ_i w_i x_i + ½ Σ_f [(Σ_i V_if x_i)² − Σ_i V_if² x_i²]
The per-factor sums s_f = Σ_i V_if x_i of the forward pass are reused for the gradient
∂z/∂V_if = x_i (s_f − V_if x_i) (libFM ``fm_SGD``). The loss derivative ``dl`` (z − y for squared loss,
sigmoid(z) − y for log loss) times the row weight is the per-row multiplier, so the score code is
loss-agnostic. Features, weights and optimizer state are float32, ``indices``/``indptr`` int64; sums over
many rows (the loss, the bias gradient) are float64. The epoch loop, shuffling and metrics stay in Python
(``algorithm.fm``); one call here runs every mini-batch of one epoch.

Training layout ("packed table"): row i of the float32 table ``P`` (feature_dim, (1 + k) + s·(1 + c)) holds
[w_i, V_i0 … V_ik-1] followed by the s optimizer-state copies (Adam: m then v), each the state of w_i and c
values for the factors: c = k, one per factor, or c = 1 for row-wise AdaGrad (``StateLayout``). A feature the
batch touches is then one contiguous run of memory for the forward pass, the gradient and the update, instead
of six scattered arrays: rare features cost one cache miss, not six. ``pack``/``unpack`` convert. The bias w0
and its state live in ``bias`` (1 + s,).

Threads. Every thread keeps its batch gradient in its own compact buffer: one slot per distinct feature it
touches. ``slot_of[t, feature]`` maps a feature to its slot as a sparse set (valid only when
``slot_feature[t, slot]`` points back), so the map is never reset between batches; it costs 4 bytes per
feature per thread. A row's slots are looked up in its forward loop, next to the loads of its parameter rows
(the cache misses of both overlap), and kept for the backward loop (overlapping the two misses makes the
1-thread CTR epoch 8-21% shorter). Whether a feature is new in the batch is a select, not a branch (it is
mispredicted on rare features): a new slot's gradient starts from zero at its first add.
T = 1 uses the serial kernel (no parallel region). For T > 1 there are two kernels:
    Hogwild (``train_epoch_hogwild``, the default): one parallel region per epoch. Thread t runs batches
    t, t + T, t + 2T, ... of the shuffled order exactly as the serial kernel does and writes its updates
    straight into the shared table and bias without locks, like xLearn and libFM. Two threads rarely
    touch the same feature row at the same moment on sparse data, and a lost update costs one step of one
    row; the model then depends on thread timing. No barrier per batch, so a descheduled thread (a busy
    machine) delays only its own batches.
    Deterministic (``train_epoch_parallel``): a mini-batch is cut into T contiguous row chunks, one per
    thread. In the update pass each feature is owned by one thread (the first thread that touched it,
    counting cyclically from feature mod T, which spreads the work). The owner sums the slots of all
    threads in increasing thread order and applies the optimizer step. No weight is written by two threads
    and every sum runs in a fixed order, so the model depends only on the seed (row order) and T, never on
    scheduling. Each batch has two parallel regions (rows, then updates), 1,800 barriers per CTR epoch:
    on an oversubscribed machine every region waits for a descheduled thread, and one thread can then be
    faster than two.

Memory latency: rows are visited in random order and rare features miss the cache, so the epoch is
latency-bound; the kernels issue software prefetches (``_prefetch``) a few rows / slots ahead. Small
helpers are inlined at the numba IR level: a call with exploded array arguments costs more than the work.
The optimizer loops index views from 0 and the update kernels use numpy's error model (no
ZeroDivisionError check), so LLVM vectorizes their square roots and divisions (this makes the k = 32 Adam
and FTRL epoch about a quarter shorter). The optimizer steps index the flat table at unsigned offsets
instead of taking views of each row: a view made per feature (inside the optimizer's branch) kept its
reference counting, two atomic operations, and the update pass took 3-5x as long.

Short rows: when every row has at most two nonzeros (``Buffers.short_rows``: one-hot user x item ratings),
``_short_rows_pass`` replaces ``_rows_pass``: a row is one dot product and two scaled adds (x_a x_b <V_a, V_b>,
∂z/∂V_a = x_a x_b V_b), with the prefetches such a row needs; the same model up to float reassociation, in
less than half the rows pass's time. When every row has exactly two (``Buffers.pair_rows``), row r's nonzeros
are at 2r and ``_pair_rows_pass`` never reads ``indptr``.

Sparse (lazy) updates, like MXNet's ``lazy_update`` for row_sparse gradients:
    only the ``w`` entries and ``V`` rows of features present in the batch are updated, weight decay
    included; optimizer state of untouched rows does not decay. Adam's bias correction uses the global step
    count (one step per mini-batch), as MXNet does. The bias w0 is updated every batch.

Optimizer steps follow MXNet's update rules with g = rescale · gradient:
    adam     g += wd·w; clip; m = β1 m + (1−β1) g; v = β2 v + (1−β2) g²; w −= lr_t m / (√v + eps),
             lr_t = lr √(1−β2^t) / (1−β1^t)
    sgd      clip; w −= lr (g + wd·w)
    adagrad  clip; h += g²; w −= lr (g / √(h + eps) + wd·w)
             row-wise (adagrad_state=row): the k factors of a row share one h, h += mean_f g_f², as row-wise
             AdaGrad and Adafactor keep it (w and w0 keep their own h)
    ftrl     clip; z += g − (√(n + g²) − √n) w / lr; n += g²;
             w = (sign(z) λ1 − z) / ((β + √n) / lr + wd) if |z| > λ1 else 0
A learning rate of 0 freezes its group.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple, cast

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from algorithm._fastmath import FASTMATH

ADAM, SGD, ADAGRAD, FTRL, ADAGRAD_ROW = 0, 1, 2, 3, 4
OPTIMIZER_CODES = {"adam": ADAM, "sgd": SGD, "adagrad": ADAGRAD, "ftrl": FTRL}
# The optimizer state copies of the model, in table order (Adam: m then v; FTRL: z then n; AdaGrad: h).
STATE_NAMES = {"adam": ("m", "v"), "sgd": (), "adagrad": ("h",), "ftrl": ("z", "n")}
STATE_ARRAYS = {optimizer: len(names) for optimizer, names in STATE_NAMES.items()}
ADAGRAD_STATES = ("element", "row")  # AdaGrad's second moment: one per factor, or one per table row


class StateLayout(NamedTuple):
    """The optimizer state a packed table row holds: the kernels' optimizer ``code``, the state copies'
    ``names`` and ``factor_width``, the values each copy keeps for the k factors (k, or 1 for row-wise
    AdaGrad)."""

    code: int
    names: tuple[str, ...]
    factor_width: int

    @property
    def n_state(self) -> int:
        return len(self.names)

    def offsets(self, k: int) -> list[int]:
        """Column of each copy in a table row: the weights [w, V] at 0, then each state copy."""
        return [0] + [1 + k + j * (1 + self.factor_width) for j in range(self.n_state)]

    def width(self, k: int) -> int:
        """Floats per packed table row."""
        return 1 + k + self.n_state * (1 + self.factor_width)


def state_layout(optimizer: str, k: int, adagrad_state: str = "element") -> StateLayout:
    """The ``StateLayout`` of ``optimizer`` for k factors (``adagrad_state``: AdaGrad's, see ADAGRAD_STATES)."""
    if optimizer == "adagrad" and adagrad_state == "row":
        return StateLayout(ADAGRAD_ROW, STATE_NAMES[optimizer], 1)
    return StateLayout(OPTIMIZER_CODES[optimizer], STATE_NAMES[optimizer], k)

REGRESSION, LOGISTIC = 0, 1

ADAM_BETA1, ADAM_BETA2 = 0.9, 0.999
FTRL_LAMBDA1, FTRL_BETA = 0.01, 1.0

# Layout of the float64 ``hp`` vector: learning rate and weight decay of bias, linear, factors; then eps,
# clip (inf = off) and rescale (<= 0 means 1 / rows in the batch).
BIAS, LINEAR, FACTORS = 0, 1, 2
HP_LR, HP_WD, HP_EPS, HP_CLIP, HP_RESCALE = 0, 3, 6, 7, 8
HP_SIZE = 9


# Software prefetch distances: a row's indptr entry is fetched 2·PREFETCH_ROWS rows ahead, its
# indices/data/label PREFETCH_ROWS ahead, its parameter rows PREFETCH_PARAMS ahead; the update pass fetches
# the optimizer state of the feature PREFETCH_SLOTS slots ahead.
PREFETCH_ROWS, PREFETCH_PARAMS, PREFETCH_SLOTS = 8, 3, 8
LINE_FLOATS = 16  # float32 values per 64-byte cache line


class Buffers(NamedTuple):
    """Per-thread scratch of the training kernels (index t of the first axis is thread t's), built by
    ``algorithm.fm``; the rows written for every nonzero are padded to whole cache lines."""

    slot_of: np.ndarray  # (T, feature_dim) int32: a feature's gradient slot (a sparse set, see ``_slot``)
    slot_feature: np.ndarray  # (T, slots) int64: the feature of each slot
    n_slots: np.ndarray  # (T,) int64: slots used in the current batch
    grad: np.ndarray  # (T, slots, 1 + k) float32: [linear, factors] gradient of each slot
    bias_grad: np.ndarray  # (T,) float64: bias gradient of the current batch
    sums: np.ndarray  # (T, >= 1 + k) float32: per-factor sums of the row (reused as a gradient sum)
    squares: np.ndarray  # (T, >= k) float32: per-factor sums of squares of the row
    row_slots: np.ndarray  # (T, >= longest row) int64: the slot of each nonzero of the row in hand (+ 2^32: new)
    loss: np.ndarray  # (T,) float64: weighted training loss summed over the epoch
    short_rows: bool  # every row of the data in hand has at most 2 nonzeros (``_short_rows_pass``)
    pair_rows: bool  # every row has exactly 2 nonzeros, row r's at 2r and 2r + 1 (``_pair_rows_pass``)


def _prefetch_codegen(context, builder, sig, args):
    """Hint the CPU to load the cache line of ``args[0][args[1:]]`` (read, keep in all cache levels)."""
    array_type = sig.args[0]
    view = context.make_array(array_type)(context, builder, args[0])
    item = cgutils.get_item_pointer(context, builder, array_type, view, list(args[1:]), wraparound=False)
    pointer = builder.bitcast(item, ir.IntType(8).as_pointer())
    i32 = ir.IntType(32)
    function = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ir.VoidType(), [pointer.type, i32, i32, i32]), "llvm.prefetch.p0")
    builder.call(function, [pointer, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
    return context.get_dummy_value()


def _prefetch_intrinsic(typingctx, array, index):
    """``_prefetch(array, i)``: prefetch ``array[i]`` (1-D; ``i`` of any integer type); no effect on results."""
    return types.void(array, types.intp), _prefetch_codegen


def _prefetch_2d_intrinsic(typingctx, array, row, col):
    """``_prefetch_2d(array, i, j)``: prefetch ``array[i, j]`` (2-D, any layout; indices of any integer type);
    no effect on results."""
    return types.void(array, types.intp, types.intp), _prefetch_codegen


_prefetch = cast(Callable[[np.ndarray, int], None], intrinsic(_prefetch_intrinsic))
_prefetch_2d = cast(Callable[[np.ndarray, int, int], None], intrinsic(_prefetch_2d_intrinsic))


# --------------------------------------------------------------------------------------------- layout


def pack(w: np.ndarray, V: np.ndarray, n_state: int, factor_width: int | None = None) -> np.ndarray:
    """The packed training table of (w, V) with ``n_state`` zeroed optimizer-state copies of ``factor_width``
    factor values each (default k)."""
    d, k = V.shape
    table = np.zeros((d, 1 + k + n_state * (1 + (k if factor_width is None else factor_width))), dtype=np.float32)
    table[:, 0] = w
    table[:, 1:1 + k] = V
    return table


def unpack(table: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous copies of (w, V) from a packed training table."""
    return np.ascontiguousarray(table[:, 0]), np.ascontiguousarray(table[:, 1:1 + k])


def split_in_place(table: np.ndarray, k: int, n_state: int, block_rows: int = 65_536,
                   rows: np.ndarray | None = None, factor_width: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """(w, V) and the ``n_state`` optimizer-state copies [(of w, of V), ...] of a packed table that owns its
    memory, as contiguous arrays (a copy's V part is (feature_dim, ``factor_width``), default k). Rows are
    copied in blocks from the last one back and the table is shrunk past each block as it goes (realloc frees
    the tail), so the copies and the table never hold much more memory together than the table did. The table
    must not be used (nor any view of it exist) after.
    ``rows``: the row of the copies each table row goes to (a permutation; default: the same row)."""
    d, width = table.shape
    c = k if factor_width is None else factor_width
    w, V = np.empty(d, np.float32), np.empty((d, k), np.float32)
    states = [(np.empty(d, np.float32), np.empty((d, c), np.float32)) for _ in range(n_state)]
    offsets = [0] + [1 + k + j * (1 + c) for j in range(n_state)]
    for r1 in range(d, 0, -block_rows):
        r0 = max(0, r1 - block_rows)
        to = slice(r0, r1) if rows is None else rows[r0:r1]
        for at, (to_w, to_V) in zip(offsets, [(w, V), *states], strict=True):
            to_w[to] = table[r0:r1, at]
            to_V[to] = table[r0:r1, at + 1:at + 1 + to_V.shape[1]]
        table.resize((r0, width), refcheck=False)
    return w, V, states


# --------------------------------------------------------------------------------------------- scoring


@njit(fastmath=FASTMATH, cache=True, inline="always")
def _sigmoid(z):
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@njit(fastmath=FASTMATH, cache=True, nogil=True)
def _score_range(data, indices, indptr, w0, w, V, logistic, out, r0, r1):
    k = V.shape[1]
    s = np.empty(k, np.float32)
    q = np.empty(k, np.float32)
    for r in range(r0, r1):
        if r + PREFETCH_PARAMS < r1:
            for p in range(indptr[r + PREFETCH_PARAMS], indptr[r + PREFETCH_PARAMS + 1]):
                i = indices[p]
                _prefetch(w, i)
                for c in range(0, k, LINE_FLOATS):
                    _prefetch_2d(V, i, c)
        s[:] = 0.0
        q[:] = 0.0
        lin = np.float32(0.0)
        for p in range(indptr[r], indptr[r + 1]):
            i = indices[p]
            x = data[p]
            lin += w[i] * x
            for f in range(k):
                vx = V[i, f] * x
                s[f] += vx
                q[f] += vx * vx
        pair = np.float32(0.0)
        for f in range(k):
            pair += s[f] * s[f] - q[f]
        z = w0[0] + lin + np.float32(0.5) * pair
        out[r] = _sigmoid(z) if logistic else z


@njit(fastmath=FASTMATH, cache=True, nogil=True)
def score_serial(data, indices, indptr, w0, w, V, logistic, out):
    """Write the score of every CSR row into ``out`` (sigmoid applied when ``logistic``); one thread."""
    _score_range(data, indices, indptr, w0, w, V, logistic, out, 0, out.size)


@njit(fastmath=FASTMATH, cache=True, parallel=True, nogil=True)
def score_parallel(data, indices, indptr, w0, w, V, logistic, out, n_chunks):
    """``score_serial`` over ``n_chunks`` contiguous row chunks in parallel (same results)."""
    n = out.size
    chunk = (n + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        r0 = min(c * chunk, n)
        _score_range(data, indices, indptr, w0, w, V, logistic, out, r0, min(r0 + chunk, n))


# ------------------------------------------------------------------------------------ optimizer steps


@njit(fastmath=FASTMATH, cache=True, inline="always")
def _step_one(opt, row, j, block, grad, coef, scale, wd, eps, clip, lr):
    """One optimizer step on the single weight ``row[j]`` (a linear weight, the bias) with gradient ``grad``; its
    state is ``row[j + block]`` (and ``row[j + 2·block]``). ``coef`` is lr_t for Adam, else lr."""
    w = row[j]
    if opt == ADAM:
        gj = min(max(grad * scale + wd * w, -clip), clip)
        mj = np.float32(ADAM_BETA1) * row[j + block] + np.float32(1.0 - ADAM_BETA1) * gj
        vj = np.float32(ADAM_BETA2) * row[j + 2 * block] + np.float32(1.0 - ADAM_BETA2) * gj * gj
        row[j + block] = mj
        row[j + 2 * block] = vj
        row[j] = w - coef * mj / (math.sqrt(vj) + eps)
    elif opt == SGD:
        gj = min(max(grad * scale, -clip), clip)
        row[j] = w - coef * (gj + wd * w)
    elif opt == ADAGRAD or opt == ADAGRAD_ROW:  # noqa: SIM109 (two integer compares in numba)
        gj = min(max(grad * scale, -clip), clip)
        hj = row[j + block] + gj * gj
        row[j + block] = hj
        row[j] = w - coef * (gj / math.sqrt(hj + eps) + wd * w)
    else:
        gj = min(max(grad * scale, -clip), clip)
        nj = row[j + 2 * block]
        n_new = nj + gj * gj
        z = row[j + block] + gj - (math.sqrt(n_new) - math.sqrt(nj)) * w / lr
        row[j + block] = z
        row[j + 2 * block] = n_new
        if abs(z) > FTRL_LAMBDA1:
            row[j] = (math.copysign(FTRL_LAMBDA1, z) - z) / ((FTRL_BETA + math.sqrt(n_new)) / lr + wd)
        else:
            row[j] = 0.0


@njit(fastmath=FASTMATH, cache=True, inline="always")
def _step_factors(opt, flat, at, block, grad, g_at, coef, scale, wd, eps, clip, lr):
    """One optimizer step on the k = block - 1 factors ``flat[at + 1:at + block]`` of a packed table row with
    gradient ``grad[g_at + 1:g_at + block]``; their state is ``block`` (and 2·block) further on (row-wise
    AdaGrad: the one h at ``at + block + 1``, after the linear weight's). The offsets are
    unsigned, so numba indexes without its negative-index wraparound and LLVM vectorizes the loops; views of the
    row (the earlier form) kept their reference counting, two atomic operations each, in every step, and the
    update pass took 3-5x as long on short rows."""
    one = np.uint64(1)
    second = block + block
    if opt == ADAM:
        for j in range(one, block):
            gj = min(max(grad[g_at + j] * scale + wd * flat[at + j], -clip), clip)
            mj = np.float32(ADAM_BETA1) * flat[at + block + j] + np.float32(1.0 - ADAM_BETA1) * gj
            vj = np.float32(ADAM_BETA2) * flat[at + second + j] + np.float32(1.0 - ADAM_BETA2) * gj * gj
            flat[at + block + j] = mj
            flat[at + second + j] = vj
            flat[at + j] -= coef * mj / (math.sqrt(vj) + eps)
    elif opt == SGD:
        for j in range(one, block):
            gj = min(max(grad[g_at + j] * scale, -clip), clip)
            flat[at + j] -= coef * (gj + wd * flat[at + j])
    elif opt == ADAGRAD:
        for j in range(one, block):
            gj = min(max(grad[g_at + j] * scale, -clip), clip)
            hj = flat[at + block + j] + gj * gj
            flat[at + block + j] = hj
            flat[at + j] -= coef * (gj / math.sqrt(hj + eps) + wd * flat[at + j])
    elif opt == ADAGRAD_ROW:
        squares = np.float32(0.0)
        for j in range(one, block):
            gj = min(max(grad[g_at + j] * scale, -clip), clip)
            squares += gj * gj
        h = flat[at + block + one] + squares / np.float32(block - one)
        flat[at + block + one] = h
        inverse = np.float32(1.0) / np.float32(math.sqrt(h + eps))
        for j in range(one, block):
            gj = min(max(grad[g_at + j] * scale, -clip), clip)
            flat[at + j] -= coef * (gj * inverse + wd * flat[at + j])
    else:
        for j in range(one, block):
            gj = min(max(grad[g_at + j] * scale, -clip), clip)
            nj = flat[at + second + j]
            n_new = nj + gj * gj
            z = flat[at + block + j] + gj - (math.sqrt(n_new) - math.sqrt(nj)) * flat[at + j] / lr
            flat[at + block + j] = z
            flat[at + second + j] = n_new
            if abs(z) > FTRL_LAMBDA1:
                flat[at + j] = (math.copysign(FTRL_LAMBDA1, z) - z) / ((FTRL_BETA + math.sqrt(n_new)) / lr + wd)
            else:
                flat[at + j] = 0.0


@njit(fastmath=FASTMATH, cache=True)
def _group_coefficients(opt, hp, t):
    """Per-group step coefficient for step t: Adam's bias-corrected lr_t, else the lr."""
    coef = np.empty(3, np.float32)
    correction = math.sqrt(1.0 - ADAM_BETA2**t) / (1.0 - ADAM_BETA1**t) if opt == ADAM else 1.0
    for group in range(3):
        coef[group] = hp[HP_LR + group] * correction
    return coef


# ------------------------------------------------------------------------------------------- training


@njit(fastmath=FASTMATH, cache=True, inline="always")
def _row_loss(z, label, loss_kind):
    """A row's score (probability for log loss), loss derivative dl and unweighted loss at logit ``z``."""
    if loss_kind == LOGISTIC:
        e = math.exp(-abs(z))  # one exp for the sigmoid and the loss
        score = 1.0 / (1.0 + e) if z >= 0.0 else e / (1.0 + e)
        return score, score - label, math.log1p(e) + max(z, 0.0) - label * z
    dl = z - label
    return z, dl, dl * dl


@njit(fastmath=FASTMATH, cache=True, inline="always")
def _chunk(t, T, b0, b1):
    size = (b1 - b0 + T - 1) // T
    return min(b0 + t * size, b1), min(b0 + (t + 1) * size, b1)


@njit(fastmath=FASTMATH, cache=True, inline="always")
def _prefetch_rows(r, r1, X, y, row_weight, order, flat, stride, k, slots, row_scores):
    """Prefetch what rows r + PREFETCH_PARAMS ... r + 2·PREFETCH_ROWS of the chunk will read."""
    data, indices, indptr = X
    if r + 2 * PREFETCH_ROWS < r1:
        _prefetch(indptr, order[r + 2 * PREFETCH_ROWS])
    if r + PREFETCH_ROWS < r1:
        row = order[r + PREFETCH_ROWS]
        start, end = indptr[row], indptr[row + 1]
        for p in range(start, end, LINE_FLOATS // 2):
            _prefetch(indices, p)
        for p in range(start, end, LINE_FLOATS):
            _prefetch(data, p)
        _prefetch(y, row)
        if row_weight.size:
            _prefetch(row_weight, row)
        _prefetch(row_scores, row)
    if r + PREFETCH_PARAMS < r1:
        row = order[r + PREFETCH_PARAMS]
        for p in range(indptr[row], indptr[row + 1]):
            i = indices[p]
            _prefetch(slots, i)
            for c in range(0, 1 + k, LINE_FLOATS):
                _prefetch(flat, i * stride + c)
            _prefetch(flat, i * stride + k)  # [w, V] may straddle a line boundary


@njit(fastmath=FASTMATH, cache=True)
def _rows_pass(t, r0, r1, X, y, row_weight, order, bias, P, k, loss_kind, buffers, row_scores):
    """Forward + backward of batch rows ``order[r0:r1]`` into thread t's buffers."""
    data, indices, indptr = X
    s = buffers.sums[t]
    q = buffers.squares[t]
    gt = buffers.grad[t]
    slots = buffers.slot_of[t]
    features = buffers.slot_feature[t]
    row_slots = buffers.row_slots[t]  # the gradient slot of each nonzero of the current row
    n = 0
    g0 = 0.0
    thread_loss = 0.0
    w0 = bias[0]
    flat = P.reshape(P.size)
    grads = gt.reshape(gt.size)
    stride = P.shape[1]
    one = np.uint64(1)
    block = np.uint64(1 + k)
    zero = np.float32(0.0)
    weighted = row_weight.size > 0
    for r in range(r0, r1):
        _prefetch_rows(r, r1, X, y, row_weight, order, flat, stride, k, slots, row_scores)
        row = order[r]
        start = indptr[row]
        end = indptr[row + 1]
        s[:] = 0.0
        q[:] = 0.0
        lin = np.float32(0.0)
        for p in range(start, end):
            x = data[p]
            i = indices[p]
            slot = slots[i]
            new = (slot >= n) | (features[slot] != i)  # not yet touched in this batch (a select, no branch)
            slot = n if new else slot
            n += new
            slots[i] = slot
            features[slot] = i
            row_slots[p - start] = slot | (np.int64(new) << 32)  # the backward loop starts a new slot at zero
            at = np.uint64(i * stride)  # (unsigned offsets, no views: see _step_factors)
            lin += flat[at] * x
            for f in range(one, block):
                vx = flat[at + f] * x
                s[f - one] += vx
                q[f - one] += vx * vx
        pair = np.float32(0.0)
        for f in range(k):
            pair += s[f] * s[f] - q[f]
        z = float(w0 + lin + np.float32(0.5) * pair)
        weight = float(row_weight[row]) if weighted else 1.0
        score, dl, loss = _row_loss(z, float(y[row]), loss_kind)
        thread_loss += weight * loss
        row_scores[row] = score
        mult = np.float32(weight * dl)
        g0 += float(mult)
        for p in range(start, end):
            i = indices[p]
            x = data[p]
            at = np.uint64(i * stride)
            coded = row_slots[p - start]
            new = (coded >> 32) != 0
            g_at = np.uint64(coded & 0xFFFFFFFF) * block
            mx = mult * x
            grads[g_at] = (zero if new else grads[g_at]) + mx
            for f in range(one, block):
                grads[g_at + f] = (zero if new else grads[g_at + f]) + mx * (s[f - one] - flat[at + f] * x)
    buffers.n_slots[t] = n
    buffers.bias_grad[t] = g0
    buffers.loss[t] += thread_loss


@njit(fastmath=FASTMATH, cache=True, inline="always")
def _short_rows_body(t, r0, r1, X, y, row_weight, order, bias, P, k, loss_kind, buffers, row_scores, pairs):
    """``_rows_pass`` for rows of at most two nonzeros (a user and an item, one-hot), the same gradients up to
    float reassociation. With nonzeros (a, x_a), (b, x_b) the pairwise term is x_a x_b <V_a, V_b> and
    ∂z/∂V_a = x_a x_b V_b, so a row is one dot product and two scaled adds, with no per-factor sums; the
    prefetches are those such a row needs (its index, nonzeros, label, score and two parameter rows), not
    the general loop's over every nonzero, which cost more than the row's arithmetic. ``pairs`` (a constant
    of the caller): every row has exactly two nonzeros, row r's at 2r, so ``indptr`` is never read (one random
    cache line a row less: the pass takes about 0.7x the time)."""
    data, indices, indptr = X
    gt = buffers.grad[t]
    slots = buffers.slot_of[t]
    features = buffers.slot_feature[t]
    n = 0
    g0 = 0.0
    thread_loss = 0.0
    w0 = bias[0]
    flat = P.reshape(P.size)
    grads = gt.reshape(gt.size)
    stride = P.shape[1]
    one = np.uint64(1)
    block = np.uint64(1 + k)
    zero = np.float32(0.0)
    weighted = row_weight.size > 0
    for r in range(r0, r1):
        if not pairs and r + 2 * PREFETCH_ROWS < r1:
            _prefetch(indptr, order[r + 2 * PREFETCH_ROWS])
        if r + PREFETCH_ROWS < r1:
            ahead = order[r + PREFETCH_ROWS]
            first = 2 * ahead if pairs else indptr[ahead]
            _prefetch(indices, first)
            _prefetch(data, first)
            _prefetch(y, ahead)
            _prefetch(row_scores, ahead)
            if weighted:
                _prefetch(row_weight, ahead)
        if r + PREFETCH_PARAMS < r1:
            ahead = order[r + PREFETCH_PARAMS]
            p = 2 * ahead if pairs else indptr[ahead]
            for q in range(p, p + 2 if pairs else min(p + 2, indptr[ahead + 1])):
                i = indices[q] * stride
                _prefetch(flat, i)
                _prefetch(flat, i + k)  # [w, V] may straddle a line boundary
        row = order[r]
        start = 2 * row if pairs else indptr[row]
        size = 2 if pairs else indptr[row + 1] - start
        z32 = w0
        sa = sb = 0
        new_a = new_b = False
        at_a = at_b = np.uint64(0)
        xa = xb = np.float32(0.0)
        if size >= 1:
            ia = indices[start]
            xa = data[start]
            sa = slots[ia]
            new_a = (sa >= n) | (features[sa] != ia)  # (a stale slot is still < the slots' count)
            sa = n if new_a else sa
            n += new_a
            slots[ia] = sa
            features[sa] = ia
            at_a = np.uint64(ia * stride)
            z32 += flat[at_a] * xa
        if size == 2:
            ib = indices[start + 1]
            xb = data[start + 1]
            sb = slots[ib]
            new_b = (sb >= n) | (features[sb] != ib)
            sb = n if new_b else sb
            n += new_b
            slots[ib] = sb
            features[sb] = ib
            at_b = np.uint64(ib * stride)
            dot = np.float32(0.0)
            for f in range(one, block):
                dot += flat[at_a + f] * flat[at_b + f]
            z32 += flat[at_b] * xb + xa * xb * dot
        z = float(z32)
        weight = float(row_weight[row]) if weighted else 1.0
        score, dl, loss = _row_loss(z, float(y[row]), loss_kind)
        thread_loss += weight * loss
        row_scores[row] = score
        mult = np.float32(weight * dl)
        g0 += float(mult)
        ga = np.uint64(sa) * block  # a new slot's gradient starts from zero (selects, not branches)
        if size >= 1:
            grads[ga] = (zero if new_a else grads[ga]) + mult * xa
        if size == 1:
            for f in range(one, block):
                grads[ga + f] = zero if new_a else grads[ga + f]
        if size == 2:
            gb = np.uint64(sb) * block
            grads[gb] = (zero if new_b else grads[gb]) + mult * xb
            mab = mult * xa * xb
            for f in range(one, block):
                grads[ga + f] = (zero if new_a else grads[ga + f]) + mab * flat[at_b + f]
                grads[gb + f] = (zero if new_b else grads[gb + f]) + mab * flat[at_a + f]
    buffers.n_slots[t] = n
    buffers.bias_grad[t] = g0
    buffers.loss[t] += thread_loss


@njit(fastmath=FASTMATH, cache=True)
def _short_rows_pass(t, r0, r1, X, y, row_weight, order, bias, P, k, loss_kind, buffers, row_scores):
    """``_short_rows_body`` for rows of zero, one or two nonzeros."""
    _short_rows_body(t, r0, r1, X, y, row_weight, order, bias, P, k, loss_kind, buffers, row_scores, False)


@njit(fastmath=FASTMATH, cache=True)
def _pair_rows_pass(t, r0, r1, X, y, row_weight, order, bias, P, k, loss_kind, buffers, row_scores):
    """``_short_rows_body`` for rows of exactly two nonzeros each, row r's at 2r (``Buffers.pair_rows``)."""
    _short_rows_body(t, r0, r1, X, y, row_weight, order, bias, P, k, loss_kind, buffers, row_scores, True)


@njit(fastmath=FASTMATH, cache=True, inline="always")
def _batch_rows(t, r0, r1, X, y, row_weight, order, bias, P, k, loss_kind, buffers, row_scores):
    """Forward + backward of batch rows ``order[r0:r1]``: ``_pair_rows_pass`` when every row has exactly two
    nonzeros, ``_short_rows_pass`` when at most two, else ``_rows_pass``."""
    if buffers.pair_rows:
        _pair_rows_pass(t, r0, r1, X, y, row_weight, order, bias, P, k, loss_kind, buffers, row_scores)
    elif buffers.short_rows:
        _short_rows_pass(t, r0, r1, X, y, row_weight, order, bias, P, k, loss_kind, buffers, row_scores)
    else:
        _rows_pass(t, r0, r1, X, y, row_weight, order, bias, P, k, loss_kind, buffers, row_scores)


@njit(fastmath=FASTMATH, cache=True, inline="always")
def _slot(buffers, t, i):
    """Thread t's gradient slot of feature i in the current batch, or -1 (a sparse set: entries left over
    from earlier batches are recognised as stale, so the map is never reset). The arrays are taken out of
    ``buffers`` before the branch: a field read inside it adds reference counting to every call (atomic, on
    memory all threads share: the deterministic 2-thread epoch took 1.25x as long)."""
    slot_of, slot_feature, n_slots = buffers.slot_of, buffers.slot_feature, buffers.n_slots
    slot = slot_of[t, i]
    return slot if slot < n_slots[t] and slot_feature[t, slot] == i else -1


@njit(fastmath=FASTMATH, cache=True, error_model="numpy")
def _update_pass(t, T, P, k, opt, hp, coef, scale, train_linear, buffers):
    """Apply the optimizer to the features of thread t's buffers. T = 1: all of them, with thread t's
    gradients; T > 1 (deterministic mode): the features thread t owns, with every thread's gradients summed
    in thread order (see the module docstring)."""
    slot_feature, G = buffers.slot_feature, buffers.grad
    gt = G[t]
    total = buffers.sums[t]  # reused as the k + 1 gradient sum (sums has k + 1 columns)
    block = 1 + k
    scale32 = np.float32(scale)
    eps = np.float32(hp[HP_EPS])
    clip = np.float32(hp[HP_CLIP])
    wd_linear = np.float32(hp[HP_WD + LINEAR])
    wd_factors = np.float32(hp[HP_WD + FACTORS])
    lr_linear = np.float32(hp[HP_LR + LINEAR])
    lr_factors = np.float32(hp[HP_LR + FACTORS])
    step_linear = train_linear and lr_linear > 0.0
    flat = P.reshape(P.size)
    grads = gt.reshape(gt.size)
    stride = P.shape[1]
    count = buffers.n_slots[t]
    for j in range(count):
        if j + PREFETCH_SLOTS < count:  # the optimizer state of rare features is not in cache yet
            ahead = slot_feature[t, j + PREFETCH_SLOTS] * stride
            for c in range(block, stride, LINE_FLOATS):
                _prefetch(flat, ahead + c)
            _prefetch(flat, ahead + stride - 1)
        i = slot_feature[t, j]
        if T > 1:
            owner = t
            for step in range(T):
                u = (i + step) % T
                if u == t or _slot(buffers, u, i) >= 0:
                    owner = u
                    break
            if owner != t:
                continue
            total[:] = 0.0
            for u in range(T):
                su = _slot(buffers, u, i)
                if su >= 0:
                    for f in range(block):
                        total[f] += G[u, su, f]
            for f in range(block):  # thread t owns feature i: no other thread reads its slot j now
                gt[j, f] = total[f]
        at = np.uint64(i * stride)
        g_at = np.uint64(j * block)
        if step_linear:
            _step_one(opt, flat, at, block, grads[g_at], coef[LINEAR], scale32, wd_linear, eps, clip, lr_linear)
        if lr_factors > 0.0:
            _step_factors(opt, flat, at, np.uint64(block), grads, g_at, coef[FACTORS], scale32, wd_factors, eps,
                          clip, lr_factors)


@njit(fastmath=FASTMATH, cache=True, error_model="numpy")
def _bias_step(t0, t1, bias, opt, hp, coef, scale, buffers):
    """Step w0 with the bias gradients of threads t0 .. t1 - 1, summed in thread order."""
    lr = np.float32(hp[HP_LR + BIAS])
    if lr <= 0.0:
        return
    bias_grad = buffers.bias_grad
    total = 0.0
    for t in range(t0, t1):
        total += bias_grad[t]
    _step_one(opt, bias, 0, 1, np.float32(total), coef[BIAS], np.float32(scale), np.float32(hp[HP_WD + BIAS]),
              np.float32(hp[HP_EPS]), np.float32(hp[HP_CLIP]), lr)


@njit(fastmath=FASTMATH, cache=True, inline="always")
def _batch_scale(hp, b0, b1):
    return hp[HP_RESCALE] if hp[HP_RESCALE] > 0.0 else 1.0 / (b1 - b0)


@njit(fastmath=FASTMATH, cache=True)
def _serial_batch(t, b0, b1, X, y, row_weight, order, bias, P, k, opt, loss_kind, hp, train_bias, train_linear,
                  step, buffers, row_scores):
    """Optimizer step ``step`` on batch rows ``order[b0:b1]``, all on thread t with thread t's buffers."""
    scale = _batch_scale(hp, b0, b1)
    coef = _group_coefficients(opt, hp, step)
    _batch_rows(t, b0, b1, X, y, row_weight, order, bias, P, k, loss_kind, buffers, row_scores)
    _update_pass(t, 1, P, k, opt, hp, coef, scale, train_linear, buffers)
    if train_bias:
        _bias_step(t, t + 1, bias, opt, hp, coef, scale, buffers)


@njit(fastmath=FASTMATH, cache=True, nogil=True)
def train_epoch_serial(X, y, row_weight, order, batch_size, bias, P, k, opt, loss_kind, hp, train_bias,
                       train_linear, step, buffers, row_scores):
    """One epoch over ``order`` in mini-batches on one thread; returns the optimizer step count after it.

    ``X`` = (data, indices, indptr); ``row_weight`` holds each row's loss weight (empty: all 1);
    ``bias`` = [w0, state...] and ``P`` (the packed table, see ``pack``) are updated in place; ``buffers``
    come from ``algorithm.fm`` (T = 1). Adds the weighted loss to ``buffers.loss`` and writes each row's
    score (probability for log loss) to ``row_scores``.
    """
    n = order.size
    for b0 in range(0, n, batch_size):
        step += 1
        _serial_batch(0, b0, min(b0 + batch_size, n), X, y, row_weight, order, bias, P, k, opt, loss_kind, hp,
                      train_bias, train_linear, step, buffers, row_scores)
    return step


@njit(fastmath=FASTMATH, cache=True, parallel=True, nogil=True)
def train_epoch_hogwild(X, y, row_weight, order, batch_size, bias, P, k, opt, loss_kind, hp, train_bias,
                        train_linear, step, buffers, row_scores):
    """``train_epoch_serial`` on T = ``buffers.n_slots.size`` threads in one parallel region: thread t runs batches
    t, t + T, t + 2T, ... with its own buffers and updates the shared ``P`` and ``bias`` without locks
    (Hogwild). Batch b is optimizer step ``step + b + 1``; the result depends on thread timing."""
    n = order.size
    T = buffers.n_slots.size
    n_batches = (n + batch_size - 1) // batch_size
    for t in prange(T):
        for b in range(t, n_batches, T):
            b0 = b * batch_size
            _serial_batch(t, b0, min(b0 + batch_size, n), X, y, row_weight, order, bias, P, k, opt, loss_kind,
                          hp, train_bias, train_linear, step + b + 1, buffers, row_scores)
    return step + n_batches


@njit(fastmath=FASTMATH, cache=True, parallel=True, nogil=True)
def train_epoch_parallel(X, y, row_weight, order, batch_size, bias, P, k, opt, loss_kind, hp, train_bias,
                         train_linear, step, buffers, row_scores):
    """``train_epoch_serial`` with T = ``buffers.n_slots.size`` row chunks per batch on numba threads: the
    deterministic mode (two parallel regions per batch)."""
    n = order.size
    T = buffers.n_slots.size
    for b0 in range(0, n, batch_size):
        b1 = min(b0 + batch_size, n)
        step += 1
        scale = _batch_scale(hp, b0, b1)
        coef = _group_coefficients(opt, hp, step)
        for t in prange(T):
            r0, r1 = _chunk(t, T, b0, b1)
            _batch_rows(t, r0, r1, X, y, row_weight, order, bias, P, k, loss_kind, buffers, row_scores)
        for t in prange(T):
            _update_pass(t, T, P, k, opt, hp, coef, scale, train_linear, buffers)
        if train_bias:
            _bias_step(0, T, bias, opt, hp, coef, scale, buffers)
    return step
