"""Numba kernels for losses that need a whole row (the last axis) at once:
cosine similarity, categorical hinge and the categorical crossentropies; and
the global sums of Dice and Tversky.

A row is a few hundred bytes, so the second look at it (to write the
gradient once its sums are known) hits the L1 cache: memory traffic stays one
read of the inputs and one write of the gradient.  Signatures follow
:mod:`losskit.kernels._numba_elementwise`: ``forward(t, p, w, w_step, a, b)``
returns ``sum_i w_i * loss_i``; ``forward_backward(..., scale, grad)`` also
writes ``grad = scale * d(that sum) / d p``.
"""

from __future__ import annotations

import math

from numba import njit, prange

from losskit.kernels._numba_elementwise import (
    clip,
    entry_point,
    finite_guard,
    inlined,
    power_any,
    power_two,
)
from losskit.kernels._vmath import cast_as, exp_as, log_as


@inlined
def _row_guard(t, p, i):  # type: ignore[no-untyped-def]
    """0, or NaN if row ``i`` of ``t`` or ``p`` holds inf or NaN (see
    :func:`finite_guard`); the row is in L1 cache when this reads it."""
    check = 0.0
    for j in range(p.shape[1]):
        check += t[i, j] + p[i, j]
    return finite_guard(check)


# --- cosine similarity: a = epsilon -------------------------------------------


@inlined
def _cosine_row(t, p, i, a):  # type: ignore[no-untyped-def]
    dot = 0.0
    true_norm2 = 0.0
    pred_norm2 = 0.0
    for j in range(p.shape[1]):
        dot += t[i, j] * p[i, j]
        true_norm2 += t[i, j] * t[i, j]
        pred_norm2 += p[i, j] * p[i, j]
    floor = a * a
    inv_true = 1.0 / math.sqrt(max(true_norm2, floor))
    inv_pred = 1.0 / math.sqrt(max(pred_norm2, floor))
    # inf or NaN inputs, or norms that overflow the input's precision (as the
    # reference's do): hand the call to the reference
    guard = finite_guard(cast_as(dot + true_norm2 + pred_norm2, p[i, 0]))
    return dot + guard, inv_true, inv_pred, pred_norm2 > floor


@inlined
def _cosine_scalar(x, y, a):  # type: ignore[no-untyped-def]
    """:func:`_cosine_row` of a one-feature row: no inner loop, so the loop
    over rows vectorises (one-output regression columns are (N, 1))."""
    floor = a * a
    inv_true = 1.0 / math.sqrt(max(x * x, floor))
    pred_norm2 = y * y
    inv_pred = 1.0 / math.sqrt(max(pred_norm2, floor))
    guard = finite_guard(cast_as(x * y + x * x + pred_norm2, y))
    return x * y + guard, inv_true, inv_pred, pred_norm2 > floor


@entry_point
def _cosine_forward_one_feature(t, p, w, w_step, a):  # type: ignore[no-untyped-def]
    total = 0.0
    for i in prange(p.shape[0]):
        dot, inv_true, inv_pred, _ = _cosine_scalar(t[i, 0], p[i, 0], a)
        total += w[i * w_step] * (-dot * inv_true * inv_pred)
    return total


@entry_point
def cosine_forward(t, p, w, w_step, a, b):  # type: ignore[no-untyped-def]
    if p.shape[1] == 1:
        return _cosine_forward_one_feature(t, p, w, w_step, a)
    total = 0.0
    for i in prange(p.shape[0]):
        dot, inv_true, inv_pred, _ = _cosine_row(t, p, i, a)
        total += w[i * w_step] * (-dot * inv_true * inv_pred)
    return total


@entry_point
def _cosine_forward_backward_one_feature(t, p, w, w_step, a, scale, grad):  # type: ignore[no-untyped-def]
    total = 0.0
    for i in prange(p.shape[0]):
        x, y = t[i, 0], p[i, 0]
        dot, inv_true, inv_pred, pred_unclamped = _cosine_scalar(x, y, a)
        weight = w[i * w_step]
        total += weight * (-dot * inv_true * inv_pred)
        curvature = dot * inv_pred * inv_pred if pred_unclamped else 0.0
        grad[i, 0] = -scale * weight * inv_true * inv_pred * (x - curvature * y)
    return total


@entry_point
def cosine_forward_backward(t, p, w, w_step, a, b, scale, grad):  # type: ignore[no-untyped-def]
    if p.shape[1] == 1:
        return _cosine_forward_backward_one_feature(t, p, w, w_step, a, scale, grad)
    total = 0.0
    for i in prange(p.shape[0]):
        dot, inv_true, inv_pred, pred_unclamped = _cosine_row(t, p, i, a)
        weight = w[i * w_step]
        total += weight * (-dot * inv_true * inv_pred)
        factor = -scale * weight * inv_true * inv_pred
        # d/dp of -dot/(|t| |p|) = -(t - dot p / |p|^2) / (|t| |p|) while |p| > eps.
        curvature = dot * inv_pred * inv_pred if pred_unclamped else 0.0
        for j in range(p.shape[1]):
            grad[i, j] = factor * (t[i, j] - curvature * p[i, j])
    return total


# --- categorical hinge --------------------------------------------------------


@inlined
def _categorical_hinge_row(t, p, i):  # type: ignore[no-untyped-def]
    positive = 0.0
    negative = -math.inf
    for j in range(p.shape[1]):
        positive += t[i, j] * p[i, j]
        negative = max(negative, (1.0 - t[i, j]) * p[i, j])
    # t * p is inf or NaN when either is (inf * 0 is NaN), so the sum of
    # products is a free guard for the whole row
    return negative - positive + 1.0, negative, finite_guard(positive)


@entry_point
def categorical_hinge_forward(t, p, w, w_step, a, b):  # type: ignore[no-untyped-def]
    total = 0.0
    for i in prange(p.shape[0]):
        margin, _, guard = _categorical_hinge_row(t, p, i)
        total += w[i * w_step] * max(margin, 0.0) + guard
    return total


@entry_point
def categorical_hinge_forward_backward(t, p, w, w_step, a, b, scale, grad):  # type: ignore[no-untyped-def]
    # Ties split the gradient as JAX and torch do: the outer maximum(margin, 0)
    # halves it, and the row maximum shares it evenly among its maximisers.
    total = 0.0
    for i in prange(p.shape[0]):
        margin, negative, guard = _categorical_hinge_row(t, p, i)
        weight = w[i * w_step]
        total += weight * max(margin, 0.0) + guard
        factor = scale * weight if margin > 0 else (0.5 * scale * weight if margin == 0 else 0.0)
        maximisers = 0
        for j in range(p.shape[1]):
            maximisers += 1 if (1.0 - t[i, j]) * p[i, j] == negative else 0
        share = factor / maximisers if maximisers else 0.0
        for j in range(p.shape[1]):
            at_max = (1.0 - t[i, j]) * p[i, j] == negative
            grad[i, j] = -factor * t[i, j] + (share * (1.0 - t[i, j]) if at_max else 0.0)
    return total


# --- categorical crossentropy: a = epsilon, b = label smoothing ---------------


@inlined
def _log_sum_exp(p, i):  # type: ignore[no-untyped-def]
    """``logsumexp(p[i])`` as (the row's largest value, the log of the sum of
    exp(p - largest)), for log-softmax as ``(p - largest) - log_total``: the
    sum of the two first lost the small term to rounding where the logits
    are large (1e15 in float64), and the sum of the row (inf or NaN iff the
    row holds them, or overflows: a :func:`finite_guard` argument)."""
    largest = -math.inf
    for j in range(p.shape[1]):
        largest = max(largest, p[i, j])
    total = 0.0
    check = 0.0
    for j in range(p.shape[1]):
        total += exp_as(p[i, j] - largest, p[i, j])
        check += p[i, j]
    return largest, log_as(total, p[i, 0]), check


# fast-math off but for contract, set explicitly (without flags, Numba
# compiles it with its fast-math caller's)
@njit(error_model="numpy", fastmath={"contract"})
def _log_softmax(x, largest, log_total):  # type: ignore[no-untyped-def]
    """``log softmax`` of ``x``, as ``(x - largest) - log_total``.  Without
    ``reassoc``: in the kernels' fast-math, LLVM regrouped it as
    ``x - (largest + log_total)``, hoisting the sum out of the loop, which
    lost the small terms where the logits are large (1e15 in float64)."""
    return (x - largest) - log_total


@inlined
def _softmax_into(p, i, out):  # type: ignore[no-untyped-def]
    """Write ``softmax(p[i])`` into ``out[i]`` (one exp per element) and return
    ``logsumexp(p[i])`` in two parts and the sum of the row (see
    :func:`_log_sum_exp`)."""
    largest = p[i, 0]
    for j in range(1, p.shape[1]):
        largest = max(largest, p[i, j])
    total = 0.0
    check = 0.0
    for j in range(p.shape[1]):
        e = exp_as(p[i, j] - largest, p[i, j])
        out[i, j] = e
        total += e
        check += p[i, j]
    inverse = 1.0 / total
    for j in range(p.shape[1]):
        out[i, j] *= inverse
    return largest, log_as(total, p[i, 0]), check


@inlined
def _row_sum(p, i):  # type: ignore[no-untyped-def]
    total = 0.0
    for j in range(p.shape[1]):
        total += p[i, j]
    return total


@entry_point
def categorical_forward(t, p, w, w_step, a, b):  # type: ignore[no-untyped-def]
    classes = p.shape[1]
    high = cast_as(1.0 - a, a)  # the clip's bound in the input's precision
    total = 0.0
    for i in prange(p.shape[0]):
        norm = cast_as(_row_sum(p, i), p[i, 0])  # divide in the input's precision
        row = 0.0
        for j in range(classes):
            q, _ = clip(p[i, j] / norm, a, high)
            row -= (t[i, j] * (1.0 - b) + b / classes) * log_as(q, p[i, 0])
        total += w[i * w_step] * (row + _row_guard(t, p, i))
    return total


@entry_point
def categorical_forward_backward(t, p, w, w_step, a, b, scale, grad):  # type: ignore[no-untyped-def]
    classes = p.shape[1]
    high = cast_as(1.0 - a, a)
    total = 0.0
    for i in prange(p.shape[0]):
        weight = w[i * w_step]
        norm = cast_as(_row_sum(p, i), p[i, 0])
        row = 0.0
        projection = 0.0  # sum_j g_j q_j with g_j = d loss / d q_j
        for j in range(classes):
            q_raw = p[i, j] / norm
            q, inside = clip(q_raw, a, high)
            target = t[i, j] * (1.0 - b) + b / classes
            row -= target * log_as(q, p[i, 0])
            g = -target / q * inside
            grad[i, j] = g
            projection += g * q_raw
        total += weight * (row + _row_guard(t, p, i))
        factor = scale * weight / norm
        for j in range(classes):
            grad[i, j] = factor * (grad[i, j] - projection)
            total += finite_guard(grad[i, j])
    return total


@entry_point
def categorical_logits_forward(t, p, w, w_step, a, b):  # type: ignore[no-untyped-def]
    classes = p.shape[1]
    total = 0.0
    for i in prange(p.shape[0]):
        largest, log_total, _ = _log_sum_exp(p, i)
        row = 0.0
        for j in range(classes):
            row -= (t[i, j] * (1.0 - b) + b / classes) * _log_softmax(p[i, j], largest, log_total)
        total += w[i * w_step] * (row + _row_guard(t, p, i))
    return total


@entry_point
def categorical_logits_forward_backward(t, p, w, w_step, a, b, scale, grad):  # type: ignore[no-untyped-def]
    classes = p.shape[1]
    total = 0.0
    for i in prange(p.shape[0]):
        weight = w[i * w_step]
        largest, log_total, _ = _softmax_into(p, i, grad)
        row = 0.0
        target_sum = 0.0
        for j in range(classes):
            target = t[i, j] * (1.0 - b) + b / classes
            row -= target * _log_softmax(p[i, j], largest, log_total)
            target_sum += target
        total += weight * (row + _row_guard(t, p, i))
        factor = scale * weight
        for j in range(classes):
            target = t[i, j] * (1.0 - b) + b / classes
            grad[i, j] = factor * (target_sum * grad[i, j] - target)
            total += finite_guard(grad[i, j])
    return total


# --- sparse categorical crossentropy: labels t of shape (rows,) --------------


@njit(inline="always", error_model="numpy")
def _label(t, i, classes):  # type: ignore[no-untyped-def]
    label = int(t[i])  # truncation, as the reference's cast to int32
    return label, 0 <= label < classes


# Each row adds finite_guard(row sum + label): NaN for an inf or NaN score or
# label anywhere in the row (labels outside [0, classes) included, whose loss
# is 0 but whose reference gradient still sees the row).


@entry_point
def sparse_forward(t, p, w, w_step, a, b):  # type: ignore[no-untyped-def]
    high = cast_as(1.0 - a, a)
    total = 0.0
    for i in prange(p.shape[0]):
        label, valid = _label(t, i, p.shape[1])
        norm = _row_sum(p, i)
        total += finite_guard(norm + t[i])
        if valid:
            q, _ = clip(p[i, label] / norm, a, high)
            total += -w[i * w_step] * log_as(q, p[i, 0])
    return total


@entry_point
def sparse_forward_backward(t, p, w, w_step, a, b, scale, grad):  # type: ignore[no-untyped-def]
    high = cast_as(1.0 - a, a)
    total = 0.0
    for i in prange(p.shape[0]):
        label, valid = _label(t, i, p.shape[1])
        norm = _row_sum(p, i)
        total += finite_guard(norm + t[i])
        for j in range(p.shape[1]):
            grad[i, j] = 0.0
        if valid:
            weight = w[i * w_step]
            q_raw = p[i, label] / norm
            q, inside = clip(q_raw, a, high)
            total += -weight * log_as(q, p[i, 0])
            g = -inside / q  # d loss / d q_label
            factor = scale * weight / norm
            for j in range(p.shape[1]):
                grad[i, j] = -factor * g * q_raw
            grad[i, label] += factor * g
            total += finite_guard(grad[i, label] + grad[i, 0])
    return total


@entry_point
def sparse_logits_forward(t, p, w, w_step, a, b):  # type: ignore[no-untyped-def]
    total = 0.0
    for i in prange(p.shape[0]):
        label, valid = _label(t, i, p.shape[1])
        largest, log_total, check = _log_sum_exp(p, i)
        total += finite_guard(check + t[i])
        if valid:
            total += w[i * w_step] * -_log_softmax(p[i, label], largest, log_total)
    return total


@entry_point
def sparse_logits_forward_backward(t, p, w, w_step, a, b, scale, grad):  # type: ignore[no-untyped-def]
    total = 0.0
    for i in prange(p.shape[0]):
        label, valid = _label(t, i, p.shape[1])
        if not valid:
            total += finite_guard(_row_sum(p, i) + t[i])
            for j in range(p.shape[1]):
                grad[i, j] = 0.0
            continue
        weight = w[i * w_step]
        largest, log_total, check = _softmax_into(p, i, grad)
        loss = -_log_softmax(p[i, label], largest, log_total)
        total += weight * loss + finite_guard(check + t[i])
        factor = scale * weight
        for j in range(p.shape[1]):
            grad[i, j] *= factor
        grad[i, label] -= factor
    return total


# --- Dice and Tversky over all axes: the three sums they need -----------------


@entry_point
def overlap_sums(t, p):  # type: ignore[no-untyped-def]
    """``(sum(t * p), sum(t), sum(p))`` in one pass."""
    intersection = 0.0
    true_sum = 0.0
    pred_sum = 0.0
    for i in prange(p.shape[0]):
        row_intersection = 0.0
        row_true = 0.0
        row_pred = 0.0
        for j in range(p.shape[1]):
            row_intersection += t[i, j] * p[i, j]
            row_true += t[i, j]
            row_pred += p[i, j]
        intersection += row_intersection
        true_sum += row_true
        pred_sum += row_pred
    return intersection, true_sum, pred_sum


@entry_point
def affine_in_true(t, slope, offset, grad):  # type: ignore[no-untyped-def]
    """``grad = slope * t + offset``: the gradient of Dice and Tversky."""
    for i in prange(t.shape[0]):
        for j in range(t.shape[1]):
            grad[i, j] = slope * t[i, j] + offset


# --- categorical focal crossentropy: a = epsilon, b = label smoothing, c = gamma,
# d = alpha (one number; per-class weights take the reference path) ------------
#
# loss = -alpha sum_j T_j (1 - q_j)^gamma log(q_j), T_j the smoothed labels and
# q_j the clipped probabilities; d loss / d q_j = alpha T_j (f'_j log q_j - f_j / q_j)
# with f_j = (1 - q_j)^gamma and f'_j its derivative in (1 - q_j).


@entry_point
def categorical_focal_forward(t, p, w, w_step, a, b, c, d):  # type: ignore[no-untyped-def]
    if c == 2.0:  # see binary_focal_forward
        return _categorical_focal_forward(t, p, w, w_step, a, b, c, d, power_two)
    return _categorical_focal_forward(t, p, w, w_step, a, b, c, d, power_any)


@inlined
def _categorical_focal_forward(t, p, w, w_step, a, b, c, d, power):  # type: ignore[no-untyped-def]
    # Elementwise math in the precision of y_pred, as in the reference (see
    # binary_focal): float64 constants would widen float32 lanes.
    classes = p.shape[1]
    total = 0.0
    for i in prange(p.shape[0]):
        like = p[i, 0]
        one, low, high = cast_as(1.0, like), cast_as(a, like), cast_as(1.0 - a, like)
        keep, spread = cast_as(1.0 - b, like), cast_as(b / classes, like)
        norm = cast_as(_row_sum(p, i), like)
        row = 0.0
        for j in range(classes):
            q, _ = clip(p[i, j] / norm, low, high)
            focal, _ = power(one - q, c, like)
            row -= (cast_as(t[i, j], like) * keep + spread) * focal * log_as(q, like)
        total += w[i * w_step] * (d * row + _row_guard(t, p, i))
    return total


@entry_point
def categorical_focal_forward_backward(t, p, w, w_step, a, b, c, d, scale, grad):  # type: ignore[no-untyped-def]
    if c == 2.0:
        return _categorical_focal_forward_backward(
            t, p, w, w_step, a, b, c, d, scale, grad, power_two
        )
    return _categorical_focal_forward_backward(t, p, w, w_step, a, b, c, d, scale, grad, power_any)


@inlined
def _categorical_focal_forward_backward(t, p, w, w_step, a, b, c, d, scale, grad, power):  # type: ignore[no-untyped-def]
    classes = p.shape[1]
    total = 0.0
    for i in prange(p.shape[0]):
        like = p[i, 0]
        one, low, high = cast_as(1.0, like), cast_as(a, like), cast_as(1.0 - a, like)
        keep, spread = cast_as(1.0 - b, like), cast_as(b / classes, like)
        alpha = cast_as(d, like)
        weight = w[i * w_step]
        norm = cast_as(_row_sum(p, i), like)
        row = 0.0
        projection = 0.0  # sum_j g_j q_j with g_j = d loss / d q_j
        for j in range(classes):
            q_raw = p[i, j] / norm
            q, inside = clip(q_raw, low, high)
            target = cast_as(t[i, j], like) * keep + spread
            log_q = log_as(q, like)
            focal, d_focal = power(one - q, c, like)
            row -= target * focal * log_q
            g = alpha * target * (d_focal * log_q - focal / q) * cast_as(inside, like)
            grad[i, j] = g
            projection += g * q_raw
        factor = cast_as(scale * weight / norm, like)
        shift = cast_as(projection, like)
        check = 0.0
        for j in range(classes):
            grad[i, j] = factor * (grad[i, j] - shift)
            check += grad[i, j]
        total += weight * (d * row + _row_guard(t, p, i)) + finite_guard(check)
    return total


@entry_point
def categorical_focal_logits_forward(t, p, w, w_step, a, b, c, d):  # type: ignore[no-untyped-def]
    if c == 2.0:  # see binary_focal_forward
        return _categorical_focal_logits_forward(t, p, w, w_step, a, b, c, d, power_two)
    return _categorical_focal_logits_forward(t, p, w, w_step, a, b, c, d, power_any)


@inlined
def _categorical_focal_logits_forward(t, p, w, w_step, a, b, c, d, power):  # type: ignore[no-untyped-def]
    classes = p.shape[1]
    high = cast_as(1.0 - a, a)
    total = 0.0
    for i in prange(p.shape[0]):
        largest, log_total, _ = _log_sum_exp(p, i)
        row = 0.0
        for j in range(classes):
            log_s = _log_softmax(p[i, j], largest, log_total)
            q, _ = clip(exp_as(log_s, p[i, j]), a, high)
            focal, _ = power(1.0 - q, c, p[i, 0])
            row -= (t[i, j] * (1.0 - b) + b / classes) * focal * log_s
        total += w[i * w_step] * (d * row + _row_guard(t, p, i))
    return total


@entry_point
def categorical_focal_logits_forward_backward(t, p, w, w_step, a, b, c, d, scale, grad):  # type: ignore[no-untyped-def]
    if c == 2.0:
        return _categorical_focal_logits_forward_backward(
            t, p, w, w_step, a, b, c, d, scale, grad, power_two
        )
    return _categorical_focal_logits_forward_backward(
        t, p, w, w_step, a, b, c, d, scale, grad, power_any
    )


@inlined
def _categorical_focal_logits_forward_backward(t, p, w, w_step, a, b, c, d, scale, grad, power):  # type: ignore[no-untyped-def]
    # With s = softmax(x) and log s exact (log-softmax): the loss is
    # sum_j u_j(log s_j, s_j), so d loss / d x_k = v_k - s_k sum_j v_j with
    # v_j = d u / d log s_j + s_j d u / d s_j.
    classes = p.shape[1]
    high = cast_as(1.0 - a, a)
    total = 0.0
    for i in prange(p.shape[0]):
        weight = w[i * w_step]
        largest, log_total, _ = _softmax_into(p, i, grad)
        row = 0.0
        v_sum = 0.0
        for j in range(classes):
            s = grad[i, j]
            log_s = _log_softmax(p[i, j], largest, log_total)
            q, inside = clip(s, a, high)
            target = t[i, j] * (1.0 - b) + b / classes
            focal, d_focal = power(1.0 - q, c, p[i, 0])
            row -= target * focal * log_s
            v = d * target * (d_focal * log_s * inside * s - focal)
            grad[i, j] = v
            v_sum += v
        total += weight * (d * row + _row_guard(t, p, i))
        factor = scale * weight
        for j in range(classes):
            s = exp_as(_log_softmax(p[i, j], largest, log_total), p[i, j])
            grad[i, j] = factor * (grad[i, j] - s * v_sum)
            total += finite_guard(grad[i, j])
    return total


# --- generalized crossentropy: labels t of shape (rows,), a = q ---------------
# loss = (1 - p^q) / q with p = y_pred[label] (0 for a label out of range);
# d loss / d p = -p^q / p.  Neither depends on the rest of the row (the
# reference selects p with `where`), so a row is read at its label only.


@inlined
def _true_class(t, p, i, like):  # type: ignore[no-untyped-def]
    """The label of row ``i``, whether it is in range, the probability of the
    true class (0 out of range, in the precision of ``like``) and the guard of
    both."""
    label, valid = _label(t, i, p.shape[1])
    probability = cast_as(0.0, like)
    if valid:
        probability = p[i, label]
    return label, valid, probability, finite_guard(probability + t[i])


@entry_point
def generalized_forward(t, p, w, w_step, a, b):  # type: ignore[no-untyped-def]
    total = 0.0
    for i in prange(p.shape[0]):
        _, _, probability, guard = _true_class(t, p, i, a)
        powered = exp_as(a * log_as(probability, a), a)
        total += w[i * w_step] * (1.0 - powered) / a + guard
    return total


@entry_point
def generalized_forward_backward(t, p, w, w_step, a, b, scale, grad):  # type: ignore[no-untyped-def]
    total = 0.0
    for i in prange(p.shape[0]):
        label, valid, probability, guard = _true_class(t, p, i, a)
        for j in range(p.shape[1]):
            grad[i, j] = 0.0
        weight = w[i * w_step]
        powered = exp_as(a * log_as(probability, a), a)
        if valid:
            derivative = -powered / probability
            grad[i, label] = scale * weight * derivative
            guard += finite_guard(derivative)
        total += weight * (1.0 - powered) / a + guard
    return total
