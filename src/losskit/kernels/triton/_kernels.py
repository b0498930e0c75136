"""Triton kernels of the fused GPU path (launched by :mod:`losskit.kernels.triton`).

Every kernel loads its inputs in their own dtype (float32, bfloat16, float16,
float64; integer labels), computes in float32 and writes the gradient in the
dtype of ``y_pred``.  A kernel never reduces across programs: each program
stores a partial sum, and :func:`sum_kernel` / :func:`finish_kernel` add the
partials in a fixed order (so a result is the same on every run).  Partial sums
carry a guard, ``x * 0`` of every input (and derivative) read, which is NaN for
inf or NaN: a total that is not finite hands the call to the reference, which
defines the inf/NaN pattern.

The per-element terms restate :mod:`losskit.functional` (the definition, and
what ``tests/test_triton.py`` checks them against) and mirror
:mod:`losskit.kernels._numba_elementwise`.  Their constants arrive as ``k0`` to
``k6`` (float32), named per loss in the comments of the ids below.  The focal
losses take a constexpr ``SQUARE`` for ``gamma = 2`` (their default): a square
instead of ``exp(gamma * log(m))``.
"""

from __future__ import annotations

import math

import triton
import triton.language as tl

# Elementwise losses: ids of the constexpr ``LOSS`` of elementwise_kernel.
SQUARED_ERROR = 0  # -
ABSOLUTE_ERROR = 1  # -
ABSOLUTE_PERCENTAGE_ERROR = 2  # k0 = eps
SQUARED_LOGARITHMIC_ERROR = 3  # k0 = eps
HUBER = 4  # k0 = delta
LOG_COSH = 5  # -
POISSON = 6  # k0 = eps
KL_DIVERGENCE = 7  # k0 = eps (summed over the row, not averaged)
BINARY_CROSSENTROPY = 8  # k0 = eps, k1 = 1 - eps (float32), k2 = 1 - ls, k3 = ls / 2
BINARY_CROSSENTROPY_LOGITS = 9  # k2 = 1 - ls, k3 = ls / 2
HINGE = 10  # k1 = squared (0 or 1); the label conversion comes from flag_ptr
# k0 = eps, k1 = 1 - eps, k2 = 1 - ls, k3 = ls / 2, k4 = gamma, k5 = the weight
# of class 1, k6 = of class 0 (alpha and 1 - alpha with class balancing, else 1)
BINARY_FOCAL = 11
BINARY_FOCAL_LOGITS = 12  # as BINARY_FOCAL; k0 and k1 unused

# Row-wise losses: ids of the constexpr ``LOSS`` of row_kernel.
CATEGORICAL_LOGITS = 0  # k2 = 1 - ls, k3 = ls / classes
CATEGORICAL = 1  # k0 = eps, k1 = 1 - eps, k2 = 1 - ls, k3 = ls / classes
SPARSE_LOGITS = 2  # -
SPARSE = 3  # k0 = eps, k1 = 1 - eps
CATEGORICAL_HINGE = 4  # -
COSINE = 5  # k0 = eps * eps (the floor of the squared norms)
# k0 = eps, k1 = 1 - eps, k2 = 1 - ls, k3 = ls / classes, k4 = gamma, k5 = alpha
CATEGORICAL_FOCAL = 6
CATEGORICAL_FOCAL_LOGITS = 7
GENERALIZED = 8  # k0 = q

LOG2 = tl.constexpr(math.log(2.0))  # a global read inside @triton.jit must be constexpr


@triton.jit
def _sign(x):  # type: ignore[no-untyped-def]
    return tl.where(x > 0, 1.0, tl.where(x < 0, -1.0, 0.0))


@triton.jit
def _log1p(z):  # type: ignore[no-untyped-def]
    """log(1 + z) for 0 <= z <= 1, accurate for tiny z (a short series)."""
    return tl.where(z < 1e-4, z * (1.0 - z * (0.5 - z / 3.0)), tl.log(1.0 + z))


@triton.jit
def _clip(x, low, high):  # type: ignore[no-untyped-def]
    """``minimum(maximum(x, low), high)`` and its derivative: 1 inside, 0
    outside, 0.5 on the ends (the ties of maximum and minimum in torch)."""
    value = tl.where(x < low, low, tl.where(x > high, high, x))
    inside = tl.where((x > low) & (x < high), 1.0, 0.0)
    on_end = tl.where((x == low) | (x == high), 0.5, 0.0)
    return value, inside + on_end


@triton.jit
def _power(m, gamma, SQUARE: tl.constexpr):  # type: ignore[no-untyped-def]
    """``m ** gamma`` and its derivative in ``m`` (``SQUARE``: gamma is 2).
    Otherwise m = 0 gives a NaN derivative (and m < 0 a NaN power): the guard
    then hands the call to the reference, as the CPU kernels do."""
    if SQUARE:
        powered = m * m
        slope = m + m
    else:
        powered = tl.exp(gamma * tl.log(m))
        slope = gamma * powered / m
    return powered, slope


@triton.jit
def _binary_focal(t, p, k0, k1, k2, k3, k4, k5, k6, LOSS: tl.constexpr, SQUARE: tl.constexpr):  # type: ignore[no-untyped-def]
    """Binary focal crossentropy of one element and its derivative:
    ``w (1 - p_t)**gamma bce`` with ``1 - p_t = s (1 - p) + (1 - s) p`` for the
    smoothed label ``s`` and ``w = s k5 + (1 - s) k6``."""
    s = t * k2 + k3
    if LOSS == 11:
        # probabilities: bce of p clipped to [eps, 1 - eps], 1 - p_t of p unclipped
        q, dq = _clip(p, k0, k1)
        bce = -(s * tl.log(q) + (1.0 - s) * tl.log(1.0 - q))
        d_bce = -(s / q - (1.0 - s) / (1.0 - q)) * dq
        miss = s * (1.0 - p) + (1.0 - s) * p
        d_miss = 1.0 - 2.0 * s
    else:
        # logits: softplus(+-x) = max(+-x, 0) + log1p(z) and the sigmoids
        # 1 / (1 + z), z / (1 + z) with z = exp(-|x|); d bce / dx = sigmoid(x) - s
        z = tl.exp(-tl.abs(p))
        shared = _log1p(z)
        inverse = 1.0 / (1.0 + z)
        sigmoid_pos = tl.where(p >= 0, inverse, z * inverse)
        sigmoid_neg = tl.where(p >= 0, z * inverse, inverse)
        bce = s * (tl.maximum(-p, 0.0) + shared) + (1.0 - s) * (tl.maximum(p, 0.0) + shared)
        d_bce = sigmoid_pos - s
        miss = s * sigmoid_neg + (1.0 - s) * sigmoid_pos
        d_miss = (1.0 - 2.0 * s) * sigmoid_pos * sigmoid_neg
    focal, d_focal = _power(miss, k4, SQUARE)
    # equal weights (no class balancing: 1 and 1) are exactly that, as in the reference
    weight = tl.where(k5 == k6, k5, s * k5 + (1.0 - s) * k6)
    return weight * (focal * bce), weight * (d_focal * d_miss * bce + focal * d_bce)


@triton.jit
def _term(t, p, k0, k1, k2, k3, k4, k5, k6, LOSS: tl.constexpr, SQUARE: tl.constexpr):  # type: ignore[no-untyped-def]
    """``(value, d value / d p)`` of one element."""
    if LOSS == 0:
        d = p - t
        value, slope = d * d, d + d
    elif LOSS == 1:
        d = p - t
        value, slope = tl.abs(d), _sign(d)
    elif LOSS == 2:
        scale = tl.maximum(tl.abs(t), k0)
        d = p - t
        value, slope = 100.0 * tl.abs(d) / scale, 100.0 * _sign(d) / scale
    elif LOSS == 3:
        p_clamped = tl.maximum(p, k0)
        dp = tl.where(p < k0, 0.0, tl.where(p == k0, 0.5, 1.0))
        d = tl.log(p_clamped + 1.0) - tl.log(tl.maximum(t, k0) + 1.0)
        value, slope = d * d, 2.0 * d * dp / (p_clamped + 1.0)
    elif LOSS == 4:
        e = p - t
        abs_e = tl.abs(e)
        q = tl.minimum(abs_e, k0)
        value = 0.5 * (q * q) + k0 * (abs_e - q)  # q * q overflows as the reference's square
        slope = tl.where(abs_e <= k0, e, k0 * _sign(e))
    elif LOSS == 5:
        # e + softplus(-2e) - log 2 = |e| + log1p(z) - log 2 with z = exp(-2|e|);
        # the derivative is tanh(e)
        e = p - t
        z = tl.exp(-2.0 * tl.abs(e))
        magnitude = (1.0 - z) / (1.0 + z)
        value = tl.abs(e) + _log1p(z) - LOG2
        slope = tl.where(e >= 0, magnitude, -magnitude)
    elif LOSS == 6:
        value, slope = p - t * tl.log(p + k0), 1.0 - t / (p + k0)
    elif LOSS == 7:
        t_clipped, _ = _clip(t, k0, 1.0)
        p_clipped, dp = _clip(p, k0, 1.0)
        value = t_clipped * (tl.log(t_clipped) - tl.log(p_clipped))
        slope = -t_clipped / p_clipped * dp
    elif LOSS == 8:
        s = t * k2 + k3
        q, dq = _clip(p, k0, k1)
        value = -(s * tl.log(q) + (1.0 - s) * tl.log(1.0 - q))
        slope = -(s / q - (1.0 - s) / (1.0 - q)) * dq
    elif LOSS == 9:
        # t softplus(-x) + (1 - t) softplus(x) = softplus(x) - t x
        s = t * k2 + k3
        z = tl.exp(-tl.abs(p))
        value = tl.maximum(p, 0.0) + _log1p(z) - s * p
        slope = tl.where(p >= 0, 1.0, z) / (1.0 + z) - s
    elif LOSS == 11 or LOSS == 12:
        value, slope = _binary_focal(t, p, k0, k1, k2, k3, k4, k5, k6, LOSS, SQUARE)
    else:
        # hinge: k0 = 1 converts 0/1 labels to -1/1; k1 = 1 squares the margin
        s = tl.where(k0 != 0, 2.0 * t - 1.0, t)
        margin = 1.0 - s * p
        positive = tl.where(margin < 0, 0.0, margin)
        tie = tl.where(margin > 0, 1.0, tl.where(margin == 0, 0.5, 0.0))
        value = tl.where(k1 != 0, positive * positive, positive)
        slope = tl.where(k1 != 0, -2.0 * positive * s, -s * tie)
    return value, slope


@triton.jit
def elementwise_kernel(  # type: ignore[no-untyped-def]
    t_ptr,
    p_ptr,
    w_ptr,
    w_stride,
    scale_ptr,
    flag_ptr,
    grad_ptr,
    rows_ptr,
    partial_ptr,
    n_rows,
    n_features,
    inv_features,
    k0,
    k1,
    k2,
    k3,
    k4,
    k5,
    k6,
    LOSS: tl.constexpr,
    SQUARE: tl.constexpr,
    HAS_W: tl.constexpr,
    WRITE_GRAD: tl.constexpr,
    STORE_ROWS: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_F: tl.constexpr,
):
    """A tile of ``BLOCK_R`` rows: per row ``w * sum_j term / features``
    (``inv_features`` is 1 for summed losses); ``partial[pid]`` is their sum
    plus the guard; ``grad = scale * w * inv_features * d term / d p``."""
    pid = tl.program_id(0)
    rows = pid.to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    row_mask = rows < n_rows
    if HAS_W:
        w = tl.load(w_ptr + rows * w_stride, mask=row_mask, other=0.0).to(tl.float32)
    else:
        w = tl.full([BLOCK_R], 1.0, tl.float32)
    if LOSS == 10:  # hinge: convert labels unless one of them is not 0 or 1
        k0 = tl.where(tl.load(flag_ptr) == 0, 1.0, 0.0)
    factor = tl.load(scale_ptr) * w * inv_features
    if BLOCK_F == 1:
        # One feature per row (or the whole array flattened): a plain 1-D run,
        # the guard added to each term rather than reduced on its own.
        t = tl.load(t_ptr + rows, mask=row_mask, other=0.0).to(tl.float32)
        p = tl.load(p_ptr + rows, mask=row_mask, other=0.0).to(tl.float32)
        value, slope = _term(t, p, k0, k1, k2, k3, k4, k5, k6, LOSS, SQUARE)
        if WRITE_GRAD:
            tl.store(grad_ptr + rows, (factor * slope).to(grad_ptr.dtype.element_ty), mask=row_mask)
        weighted = w * (tl.where(row_mask, value, 0.0) * inv_features)
        if STORE_ROWS:
            tl.store(rows_ptr + rows, weighted, mask=row_mask)
        guard = tl.where(row_mask, (t * p + slope) * 0.0, 0.0)
        tl.store(partial_ptr + pid, tl.sum(weighted + guard, axis=0))
    else:
        acc = tl.zeros([BLOCK_R], tl.float32)
        guard = tl.zeros([BLOCK_R], tl.float32)
        for start in range(0, n_features, BLOCK_F):
            cols = start + tl.arange(0, BLOCK_F)
            mask = row_mask[:, None] & (cols < n_features)[None, :]
            index = rows[:, None] * n_features + cols[None, :]
            t = tl.load(t_ptr + index, mask=mask, other=0.0).to(tl.float32)
            p = tl.load(p_ptr + index, mask=mask, other=0.0).to(tl.float32)
            value, slope = _term(t, p, k0, k1, k2, k3, k4, k5, k6, LOSS, SQUARE)
            acc += tl.sum(tl.where(mask, value, 0.0), axis=1)
            guard += tl.sum(tl.where(mask, (t * p + slope) * 0.0, 0.0), axis=1)
            if WRITE_GRAD:
                gradient = factor[:, None] * slope
                tl.store(grad_ptr + index, gradient.to(grad_ptr.dtype.element_ty), mask=mask)
        weighted = w * (acc * inv_features)
        if STORE_ROWS:
            tl.store(rows_ptr + rows, weighted, mask=row_mask)
        tl.store(partial_ptr + pid, tl.sum(weighted + guard, axis=0))


@triton.jit
def not_binary_kernel(t_ptr, partial_ptr, n, BLOCK: tl.constexpr):  # type: ignore[no-untyped-def]
    """Per block, how many labels are neither 0 nor 1 (hinge's conversion rule)."""
    pid = tl.program_id(0)
    offsets = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    t = tl.load(t_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    other = tl.where(mask & (t != 0.0) & (t != 1.0), 1.0, 0.0)
    tl.store(partial_ptr + pid, tl.sum(other, axis=0))


@triton.jit
def _online_logsumexp(largest, total, x, mask):  # type: ignore[no-untyped-def]
    """Fold a chunk (rows x classes) into each row's running maximum and its
    sum of ``exp(x - maximum)``, rescaling the sum when the maximum grows."""
    new_largest = tl.maximum(largest, tl.max(x, axis=1))
    shift = tl.where(largest == new_largest, 1.0, tl.exp(largest - new_largest))
    e = tl.where(mask, tl.exp(x - new_largest[:, None]), 0.0)
    return new_largest, total * shift + tl.sum(e, axis=1)


@triton.jit
def _online_max(largest, count, values, mask):  # type: ignore[no-untyped-def]
    """Fold a chunk (rows x classes) into each row's running maximum and the
    number of its maximisers."""
    chunk_max = tl.max(tl.where(mask, values, -float("inf")), axis=1)
    at_max = mask & (values == chunk_max[:, None])
    chunk_count = tl.sum(tl.where(at_max, 1.0, 0.0), axis=1)
    count = tl.where(chunk_max > largest, chunk_count, count)
    count = tl.where(chunk_max == largest, count + chunk_count, count)
    return tl.maximum(largest, chunk_max), count


@triton.jit
def row_kernel(  # type: ignore[no-untyped-def]
    t_ptr,
    p_ptr,
    w_ptr,
    w_stride,
    scale_ptr,
    grad_ptr,
    rows_ptr,
    partial_ptr,
    n_rows,
    n_classes,
    ignore_class,
    k0,
    k1,
    k2,
    k3,
    k4,
    k5,
    k6,
    LOSS: tl.constexpr,
    SQUARE: tl.constexpr,
    HAS_W: tl.constexpr,
    HAS_IGNORE: tl.constexpr,
    WRITE_GRAD: tl.constexpr,
    STORE_ROWS: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_C: tl.constexpr,
    ONE_CHUNK: tl.constexpr,
):
    """``BLOCK_R`` rows per program, their class axis in chunks of ``BLOCK_C``
    (an online max / softmax, so a row of any length fits; a long row gets a
    program of its own; crossentropy from logits reads a row that fits one chunk,
    ``ONE_CHUNK``, only once): ``w * loss`` per row, the gradient times ``scale * w``,
    and ``partial[pid]``, their sum with the guard.  ``grad_ptr`` may be
    ``p_ptr`` (in-place gradient): a chunk is read before it is written, and the
    first pass over the rows is complete by then."""
    pid = tl.program_id(0)
    rows = pid.to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    row_mask = rows < n_rows
    base = rows * n_classes
    cols = tl.arange(0, BLOCK_C)
    w = tl.full([BLOCK_R], 1.0, tl.float32)
    if HAS_W:
        w = tl.load(w_ptr + rows * w_stride, mask=row_mask, other=0.0).to(tl.float32)
    factor = tl.load(scale_ptr) * w
    guard = tl.zeros([BLOCK_R], tl.float32)
    zeros = tl.zeros([BLOCK_R], tl.float32)
    keep = row_mask  # False for a row whose label is ignore_class: loss and gradient 0
    if LOSS == 2 or LOSS == 3 or LOSS == 8:
        raw_label = tl.load(t_ptr + rows, mask=row_mask, other=0)
        guard += raw_label.to(tl.float32) * 0.0
        label = raw_label.to(tl.int32)  # truncation, as the reference's cast
        if HAS_IGNORE:
            keep = keep & (label != ignore_class)
        valid = keep & (label >= 0) & (label < n_classes)

    if LOSS == 0 or LOSS == 2:
        # Logits: online logsumexp; loss = sum(s) log(total) + sum(s (max - x))
        # for smoothed targets s (sparse: (max - x[label]) + log(total)), not
        # sum(s) lse - sum(s x), which cancels far from zero (a row of equal
        # logits at 1e20 lost log C); d loss / d x = sum(s) softmax(x) - s.
        largest = tl.full([BLOCK_R], -float("inf"), tl.float32)
        total = zeros
        target_sum = zeros
        target_gap = zeros  # sum(s (max - x)) under the running maximum
        if ONE_CHUNK:
            # The row fits one chunk: read once, kept for the gradient below
            # (the loop's first step, where the shift of the empty sum is moot).
            mask = row_mask[:, None] & (cols < n_classes)[None, :]
            index = base[:, None] + cols[None, :]
            x = tl.load(p_ptr + index, mask=mask, other=-float("inf")).to(tl.float32)
            largest = tl.max(x, axis=1)
            total = tl.sum(tl.where(mask, tl.exp(x - largest[:, None]), 0.0), axis=1)
            guard += tl.sum(tl.where(mask, x * 0.0, 0.0), axis=1)
            if LOSS == 0:
                t = tl.load(t_ptr + index, mask=mask, other=0.0).to(tl.float32)
                s = tl.where(mask, t * k2 + k3, 0.0)
                target_sum = tl.sum(s, axis=1)
                target_gap = tl.sum(tl.where(mask, s * (largest[:, None] - x), 0.0), axis=1)
                guard += tl.sum(t * 0.0, axis=1)
        else:
            for start in range(0, n_classes, BLOCK_C):
                offsets = start + cols
                mask = row_mask[:, None] & (offsets < n_classes)[None, :]
                index = base[:, None] + offsets[None, :]
                x = tl.load(p_ptr + index, mask=mask, other=-float("inf")).to(tl.float32)
                earlier = largest
                largest, total = _online_logsumexp(largest, total, x, mask)
                guard += tl.sum(tl.where(mask, x * 0.0, 0.0), axis=1)
                if LOSS == 0:
                    t = tl.load(t_ptr + index, mask=mask, other=0.0).to(tl.float32)
                    s = tl.where(mask, t * k2 + k3, 0.0)
                    # the earlier chunks' gap grows by sum(s) times the rise of
                    # the maximum (none before the first chunk: no targets yet)
                    rise = tl.where(target_sum == 0.0, 0.0, target_sum * (largest - earlier))
                    gap = tl.where(mask, s * (largest[:, None] - x), 0.0)
                    target_gap += rise + tl.sum(gap, axis=1)
                    target_sum += tl.sum(s, axis=1)
                    guard += tl.sum(t * 0.0, axis=1)
        log_total = tl.log(total)
        if LOSS == 0:
            loss = target_sum * log_total + target_gap
            scaled = factor
        else:
            picked = tl.load(p_ptr + base + label, mask=valid, other=0.0).to(tl.float32)
            # (max - x) + log(total), not lse - x: no cancellation for a small loss
            loss = tl.where(valid, (largest - picked) + log_total, 0.0)
            target_sum = zeros + 1.0
            scaled = tl.where(valid, factor, 0.0)
        if WRITE_GRAD and ONE_CHUNK:
            e = tl.exp((x - largest[:, None]) - log_total[:, None])
            if LOSS == 0:
                gradient = scaled[:, None] * (target_sum[:, None] * e - (t * k2 + k3))
            else:
                hot = tl.where(cols[None, :] == label[:, None], 1.0, 0.0)
                gradient = scaled[:, None] * (e - hot)
            guard += tl.sum(tl.where(mask, gradient * 0.0, 0.0), axis=1)
            tl.store(grad_ptr + index, gradient.to(grad_ptr.dtype.element_ty), mask=mask)
        elif WRITE_GRAD:
            for start in range(0, n_classes, BLOCK_C):
                offsets = start + cols
                mask = row_mask[:, None] & (offsets < n_classes)[None, :]
                index = base[:, None] + offsets[None, :]
                x = tl.load(p_ptr + index, mask=mask, other=0.0).to(tl.float32)
                e = tl.exp((x - largest[:, None]) - log_total[:, None])
                if LOSS == 0:
                    t = tl.load(t_ptr + index, mask=mask, other=0.0).to(tl.float32)
                    gradient = scaled[:, None] * (target_sum[:, None] * e - (t * k2 + k3))
                else:
                    hot = tl.where(offsets[None, :] == label[:, None], 1.0, 0.0)
                    gradient = scaled[:, None] * (e - hot)
                guard += tl.sum(tl.where(mask, gradient * 0.0, 0.0), axis=1)
                tl.store(grad_ptr + index, gradient.to(grad_ptr.dtype.element_ty), mask=mask)
    elif LOSS == 1 or LOSS == 3:
        # Probabilities: q = p / sum(p), clipped to [eps, 1 - eps]; with
        # g_j = d loss / d q_j, d loss / d p_k = (g_k - sum_j g_j q_j) / sum(p).
        norm = zeros
        for start in range(0, n_classes, BLOCK_C):
            offsets = start + cols
            mask = row_mask[:, None] & (offsets < n_classes)[None, :]
            p = tl.load(p_ptr + base[:, None] + offsets[None, :], mask=mask, other=0.0)
            p = p.to(tl.float32)
            norm += tl.sum(p, axis=1)
            guard += tl.sum(p * 0.0, axis=1)
        norm = tl.where(row_mask, norm, 1.0)
        if LOSS == 1:
            loss = zeros
            projection = zeros
            for start in range(0, n_classes, BLOCK_C):
                offsets = start + cols
                mask = row_mask[:, None] & (offsets < n_classes)[None, :]
                index = base[:, None] + offsets[None, :]
                p = tl.load(p_ptr + index, mask=mask, other=0.0).to(tl.float32)
                t = tl.load(t_ptr + index, mask=mask, other=0.0).to(tl.float32)
                q_raw = p / norm[:, None]
                q, inside = _clip(q_raw, k0, k1)
                s = t * k2 + k3
                loss -= tl.sum(tl.where(mask, s * tl.log(q), 0.0), axis=1)
                projection += tl.sum(tl.where(mask, -s / q * inside * q_raw, 0.0), axis=1)
                guard += tl.sum(t * 0.0, axis=1)
        else:
            picked = tl.load(p_ptr + base + label, mask=valid, other=1.0).to(tl.float32)
            q_label = picked / norm
            q, inside = _clip(q_label, k0, k1)
            loss = tl.where(valid, -tl.log(q), 0.0)
            g_label = tl.where(valid, -inside / q, 0.0)
        if WRITE_GRAD:
            scaled = factor / norm
            for start in range(0, n_classes, BLOCK_C):
                offsets = start + cols
                mask = row_mask[:, None] & (offsets < n_classes)[None, :]
                index = base[:, None] + offsets[None, :]
                p = tl.load(p_ptr + index, mask=mask, other=0.0).to(tl.float32)
                if LOSS == 1:
                    t = tl.load(t_ptr + index, mask=mask, other=0.0).to(tl.float32)
                    q, inside = _clip(p / norm[:, None], k0, k1)
                    g = -(t * k2 + k3) / q * inside - projection[:, None]
                else:
                    at_label = offsets[None, :] == label[:, None]
                    g = tl.where(at_label, g_label[:, None], 0.0) - (g_label * q_label)[:, None]
                gradient = scaled[:, None] * g
                guard += tl.sum(tl.where(mask, gradient * 0.0, 0.0), axis=1)
                tl.store(grad_ptr + index, gradient.to(grad_ptr.dtype.element_ty), mask=mask)
    elif LOSS == 4:
        # Categorical hinge: max(max((1 - t) p) - sum(t p) + 1, 0); ties split
        # the gradient as torch does (maximum halves it, amax shares it).
        positive = zeros
        negative = tl.full([BLOCK_R], -float("inf"), tl.float32)
        count = zeros
        for start in range(0, n_classes, BLOCK_C):
            offsets = start + cols
            mask = row_mask[:, None] & (offsets < n_classes)[None, :]
            index = base[:, None] + offsets[None, :]
            p = tl.load(p_ptr + index, mask=mask, other=0.0).to(tl.float32)
            t = tl.load(t_ptr + index, mask=mask, other=0.0).to(tl.float32)
            positive += tl.sum(t * p, axis=1)
            negative, count = _online_max(negative, count, (1.0 - t) * p, mask)
            guard += tl.sum(t * p * 0.0, axis=1)
        margin = negative - positive + 1.0
        loss = tl.maximum(margin, 0.0)
        if WRITE_GRAD:
            active = factor * tl.where(margin > 0, 1.0, tl.where(margin == 0, 0.5, 0.0))
            share = active / tl.where(count > 0, count, 1.0)
            for start in range(0, n_classes, BLOCK_C):
                offsets = start + cols
                mask = row_mask[:, None] & (offsets < n_classes)[None, :]
                index = base[:, None] + offsets[None, :]
                p = tl.load(p_ptr + index, mask=mask, other=0.0).to(tl.float32)
                t = tl.load(t_ptr + index, mask=mask, other=0.0).to(tl.float32)
                at_max = ((1.0 - t) * p) == negative[:, None]
                gradient = -active[:, None] * t + tl.where(at_max, share[:, None] * (1.0 - t), 0.0)
                tl.store(grad_ptr + index, gradient.to(grad_ptr.dtype.element_ty), mask=mask)
    elif LOSS == 6:
        # Categorical focal from probabilities: q = clip(p / sum(p)); loss =
        # -sum(alpha f_j s_j log q_j) with f_j = (1 - q_j)**gamma; with g_j =
        # d loss / d q_j = alpha s_j (f'_j log q_j - f_j / q_j) (0 where clipped),
        # d loss / d p_k = (g_k - sum_j g_j q_j) / sum(p).
        norm = zeros
        for start in range(0, n_classes, BLOCK_C):
            offsets = start + cols
            mask = row_mask[:, None] & (offsets < n_classes)[None, :]
            p = tl.load(p_ptr + base[:, None] + offsets[None, :], mask=mask, other=0.0)
            p = p.to(tl.float32)
            norm += tl.sum(p, axis=1)
            guard += tl.sum(p * 0.0, axis=1)
        norm = tl.where(row_mask, norm, 1.0)
        loss = zeros
        projection = zeros
        for start in range(0, n_classes, BLOCK_C):
            offsets = start + cols
            mask = row_mask[:, None] & (offsets < n_classes)[None, :]
            index = base[:, None] + offsets[None, :]
            p = tl.load(p_ptr + index, mask=mask, other=0.0).to(tl.float32)
            t = tl.load(t_ptr + index, mask=mask, other=0.0).to(tl.float32)
            q_raw = p / norm[:, None]
            q, inside = _clip(q_raw, k0, k1)
            s = t * k2 + k3
            log_q = tl.log(q)
            focal, d_focal = _power(1.0 - q, k4, SQUARE)
            loss -= tl.sum(tl.where(mask, (k5 * focal) * (s * log_q), 0.0), axis=1)
            g = k5 * s * (d_focal * log_q - focal / q) * inside
            projection += tl.sum(tl.where(mask, g * q_raw, 0.0), axis=1)
            guard += tl.sum(t * 0.0, axis=1)
        if WRITE_GRAD:
            scaled = factor / norm
            for start in range(0, n_classes, BLOCK_C):
                offsets = start + cols
                mask = row_mask[:, None] & (offsets < n_classes)[None, :]
                index = base[:, None] + offsets[None, :]
                p = tl.load(p_ptr + index, mask=mask, other=0.0).to(tl.float32)
                t = tl.load(t_ptr + index, mask=mask, other=0.0).to(tl.float32)
                q, inside = _clip(p / norm[:, None], k0, k1)
                focal, d_focal = _power(1.0 - q, k4, SQUARE)
                g = k5 * (t * k2 + k3) * (d_focal * tl.log(q) - focal / q) * inside
                gradient = scaled[:, None] * (g - projection[:, None])
                guard += tl.sum(tl.where(mask, gradient * 0.0, 0.0), axis=1)
                tl.store(grad_ptr + index, gradient.to(grad_ptr.dtype.element_ty), mask=mask)
    elif LOSS == 7:
        # Categorical focal from logits: an online logsumexp, then log s_j =
        # (x_j - max) - log(total) (unclipped) and q_j = clip(s_j); loss =
        # -sum(alpha f_j t_j log s_j).  With v_j = d loss / d log s_j + s_j d
        # loss / d s_j = alpha t_j (f'_j log s_j s_j [s_j inside the clip] - f_j),
        # d loss / d x_k = v_k - s_k sum_j v_j.
        largest = tl.full([BLOCK_R], -float("inf"), tl.float32)
        total = zeros
        for start in range(0, n_classes, BLOCK_C):
            offsets = start + cols
            mask = row_mask[:, None] & (offsets < n_classes)[None, :]
            x = tl.load(p_ptr + base[:, None] + offsets[None, :], mask=mask, other=-float("inf"))
            x = x.to(tl.float32)
            largest, total = _online_logsumexp(largest, total, x, mask)
            guard += tl.sum(tl.where(mask, x * 0.0, 0.0), axis=1)
        log_total = tl.log(total)
        loss = zeros
        v_sum = zeros
        for start in range(0, n_classes, BLOCK_C):
            offsets = start + cols
            mask = row_mask[:, None] & (offsets < n_classes)[None, :]
            index = base[:, None] + offsets[None, :]
            x = tl.load(p_ptr + index, mask=mask, other=0.0).to(tl.float32)
            t = tl.load(t_ptr + index, mask=mask, other=0.0).to(tl.float32)
            log_s = (x - largest[:, None]) - log_total[:, None]
            soft = tl.exp(log_s)
            q, inside = _clip(soft, k0, k1)
            s = t * k2 + k3
            focal, d_focal = _power(1.0 - q, k4, SQUARE)
            loss -= tl.sum(tl.where(mask, (k5 * focal) * (s * log_s), 0.0), axis=1)
            v = k5 * s * (d_focal * log_s * inside * soft - focal)
            v_sum += tl.sum(tl.where(mask, v, 0.0), axis=1)
            guard += tl.sum(t * 0.0, axis=1)
        if WRITE_GRAD:
            for start in range(0, n_classes, BLOCK_C):
                offsets = start + cols
                mask = row_mask[:, None] & (offsets < n_classes)[None, :]
                index = base[:, None] + offsets[None, :]
                x = tl.load(p_ptr + index, mask=mask, other=0.0).to(tl.float32)
                t = tl.load(t_ptr + index, mask=mask, other=0.0).to(tl.float32)
                log_s = (x - largest[:, None]) - log_total[:, None]
                soft = tl.exp(log_s)
                q, inside = _clip(soft, k0, k1)
                focal, d_focal = _power(1.0 - q, k4, SQUARE)
                v = k5 * (t * k2 + k3) * (d_focal * log_s * inside * soft - focal)
                gradient = factor[:, None] * (v - soft * v_sum[:, None])
                guard += tl.sum(tl.where(mask, gradient * 0.0, 0.0), axis=1)
                tl.store(grad_ptr + index, gradient.to(grad_ptr.dtype.element_ty), mask=mask)
    elif LOSS == 8:
        # Generalized crossentropy: (1 - p**q) / q of p = y_pred[label] (0 for a
        # label out of range); the gradient -p**q / p sits at the label alone.
        picked = tl.load(p_ptr + base + label, mask=valid, other=0.0).to(tl.float32)
        guard += picked * 0.0
        powered = tl.exp(k0 * tl.log(picked))
        loss = (1.0 - powered) / k0
        if WRITE_GRAD:
            derivative = -powered / picked
            guard += tl.where(valid, derivative * 0.0, 0.0)
            slope = tl.where(valid, factor * derivative, 0.0)
            for start in range(0, n_classes, BLOCK_C):
                offsets = start + cols
                mask = row_mask[:, None] & (offsets < n_classes)[None, :]
                at_label = offsets[None, :] == label[:, None]
                gradient = tl.where(at_label, slope[:, None], 0.0)
                tl.store(
                    grad_ptr + base[:, None] + offsets[None, :],
                    gradient.to(grad_ptr.dtype.element_ty),
                    mask=mask,
                )
    else:
        # Cosine: -dot / (|t| |p|), norms' squares clamped below by eps^2;
        # d / dp = -(t - dot p / |p|^2) / (|t| |p|) while |p|^2 > eps^2.
        dot = zeros
        true_norm2 = zeros
        pred_norm2 = zeros
        for start in range(0, n_classes, BLOCK_C):
            offsets = start + cols
            mask = row_mask[:, None] & (offsets < n_classes)[None, :]
            index = base[:, None] + offsets[None, :]
            p = tl.load(p_ptr + index, mask=mask, other=0.0).to(tl.float32)
            t = tl.load(t_ptr + index, mask=mask, other=0.0).to(tl.float32)
            dot += tl.sum(t * p, axis=1)
            true_norm2 += tl.sum(t * t, axis=1)
            pred_norm2 += tl.sum(p * p, axis=1)
        guard += (dot + true_norm2 + pred_norm2) * 0.0
        inv_true = 1.0 / tl.sqrt(tl.maximum(true_norm2, k0))
        inv_pred = 1.0 / tl.sqrt(tl.maximum(pred_norm2, k0))
        loss = -dot * inv_true * inv_pred
        if WRITE_GRAD:
            scaled = -factor * inv_true * inv_pred
            curvature = tl.where(pred_norm2 > k0, dot * inv_pred * inv_pred, 0.0)
            for start in range(0, n_classes, BLOCK_C):
                offsets = start + cols
                mask = row_mask[:, None] & (offsets < n_classes)[None, :]
                index = base[:, None] + offsets[None, :]
                p = tl.load(p_ptr + index, mask=mask, other=0.0).to(tl.float32)
                t = tl.load(t_ptr + index, mask=mask, other=0.0).to(tl.float32)
                gradient = scaled[:, None] * (t - curvature[:, None] * p)
                tl.store(grad_ptr + index, gradient.to(grad_ptr.dtype.element_ty), mask=mask)
    weighted = tl.where(keep, w * loss, 0.0)
    if STORE_ROWS:
        tl.store(rows_ptr + rows, weighted, mask=row_mask)
    tl.store(partial_ptr + pid, tl.sum(tl.where(keep, weighted + guard, 0.0), axis=0))


@triton.jit
def overlap_kernel(t_ptr, p_ptr, partial_ptr, n, n_programs, BLOCK: tl.constexpr):  # type: ignore[no-untyped-def]
    """Per block: sum(t * p), sum(t), sum(p) (Dice and Tversky), stored at
    ``partial[pid]``, ``partial[n_programs + pid]``, ``partial[2 n_programs + pid]``."""
    pid = tl.program_id(0)
    offsets = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    t = tl.load(t_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    p = tl.load(p_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    tl.store(partial_ptr + pid, tl.sum(t * p, axis=0))
    tl.store(partial_ptr + n_programs + pid, tl.sum(t, axis=0))
    tl.store(partial_ptr + 2 * n_programs + pid, tl.sum(p, axis=0))


@triton.jit
def affine_kernel(t_ptr, coefficients_ptr, grad_ptr, n, BLOCK: tl.constexpr):  # type: ignore[no-untyped-def]
    """``grad = slope * t + offset`` (the gradient of Dice and Tversky), with
    ``(slope, offset)`` read from the device."""
    pid = tl.program_id(0)
    offsets = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    slope = tl.load(coefficients_ptr)
    offset = tl.load(coefficients_ptr + 1)
    t = tl.load(t_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    gradient = slope * t + offset
    tl.store(grad_ptr + offsets, gradient.to(grad_ptr.dtype.element_ty), mask=mask)


@triton.jit
def sum_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr):  # type: ignore[no-untyped-def]
    """One level of the fixed-order reduction: ``out[pid]`` = the sum of block ``pid``."""
    pid = tl.program_id(0)
    offsets = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offsets, mask=offsets < n, other=0.0)
    tl.store(out_ptr + pid, tl.sum(x, axis=0))


@triton.jit
def finish_kernel(x_ptr, n, divisor_ptr, out_ptr, BLOCK: tl.constexpr):  # type: ignore[no-untyped-def]
    """The last level, one program: ``out = (total / divisor, total)``, where a
    zero divisor gives 0 (divide-no-nan)."""
    acc = tl.zeros([BLOCK], tl.float32)
    for start in range(0, n, BLOCK):
        offsets = start + tl.arange(0, BLOCK)
        acc += tl.load(x_ptr + offsets, mask=offsets < n, other=0.0)
    total = tl.sum(acc, axis=0)
    divisor = tl.load(divisor_ptr)
    safe = tl.where(divisor == 0, 1.0, divisor)
    tl.store(out_ptr, tl.where(divisor == 0, 0.0, total / safe))
    tl.store(out_ptr + 1, total)


@triton.jit
def scale_kernel(grad_ptr, factor_ptr, n, BLOCK: tl.constexpr):  # type: ignore[no-untyped-def]
    """``grad *= factor`` (the upstream gradient, read on the device), skipped
    when it is 1: backward needs no host synchronisation and, after
    ``loss.backward()``, no pass over the gradient.  A fixed grid strides over
    the tiles, so that the skip costs a few programs, not one per tile (80 us
    for 2^28 elements on an H100)."""
    factor = tl.load(factor_ptr).to(tl.float32)
    if factor != 1.0:
        stride = tl.num_programs(0).to(tl.int64) * BLOCK
        for start in range(tl.program_id(0).to(tl.int64) * BLOCK, n, stride):
            offsets = start + tl.arange(0, BLOCK)
            mask = offsets < n
            g = tl.load(grad_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
            tl.store(grad_ptr + offsets, (g * factor).to(grad_ptr.dtype.element_ty), mask=mask)
