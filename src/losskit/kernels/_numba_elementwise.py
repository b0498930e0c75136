"""Numba kernels for losses that average (or sum) an elementwise term over the
last axis: one parallel pass over ``(rows, features)`` that reads ``y_true``
and ``y_pred`` once and, for forward+backward, writes the gradient in the
same pass.

Every elementwise function returns ``(value, d value / d y_pred)`` for one
element; it restates the reference math of :mod:`losskit.functional` (which
stays the definition, and which these kernels are property-tested against).
Parameters arrive as ``a`` and ``b`` (float64).  Sums are accumulated in
float64, per row and across rows.
"""

from __future__ import annotations

import math

from numba import njit, prange

from losskit.kernels._vmath import cast_as, exp_as, log1p_as, log_as

FASTMATH = {"reassoc", "contract", "nsz"}  # vectorised sums; NaN and inf stay exact
# Kernel entry points: threads, Numba's on-disk cache, and NumPy's error model
# (x / 0 is inf or NaN; Python's raises, and its check in every division keeps
# LLVM from vectorising the loop).
entry_point = njit(parallel=True, fastmath=FASTMATH, cache=True, error_model="numpy")
# Pieces of a kernel's loop body, inlined into it.
inlined = njit(inline="always", fastmath=FASTMATH, error_model="numpy")
LOG2 = math.log(2.0)


@njit(inline="always", error_model="numpy")
def finite_guard(x):  # type: ignore[no-untyped-def]
    """0 for finite ``x``, NaN for inf or NaN.  Kernels add it to their sums
    for every input (and derivative) they read, so a total that is not finite
    tells the dispatcher to hand the call to the reference, which defines the
    inf/NaN pattern.  A product with zero: without the ``nnan`` fast-math
    flag LLVM may not fold it away, where ``reassoc`` would cancel the
    ``x - x`` of ``total + (x - x)``; the zero has the precision of ``x``, so
    float32 lanes are not widened to float64."""
    return cast_as(0.0, x) * x


@njit(inline="always", error_model="numpy")
def clamp_below(x, low):  # type: ignore[no-untyped-def]
    """``max(x, low)`` that propagates NaN, and its derivative in x (a tie
    splits it, 0.5, as ``maximum`` does in JAX and torch).  Selects, not
    branches, so loops over it vectorise."""
    below = x < low
    value = low if below else x
    return value, (0.0 if below else (0.5 if x == low else 1.0))


@njit(inline="always", error_model="numpy")
def clip(x, low, high):  # type: ignore[no-untyped-def]
    """Keras's ``clip`` and its derivative: 1 inside the interval, 0 outside,
    0.5 on its ends (the tie of ``minimum(maximum(x, low), high)``)."""
    value = low if x < low else (high if x > high else x)
    inside = 1.0 if low < x < high else 0.0
    on_end = 0.5 if (x == low) | (x == high) else 0.0
    return value, inside + on_end


@njit(inline="always", error_model="numpy")
def sign(x):  # type: ignore[no-untyped-def]
    return 1.0 if x > 0 else (-1.0 if x < 0 else 0.0)


@njit(inline="always", error_model="numpy")
def softplus_and_sigmoid(x, like):  # type: ignore[no-untyped-def]
    """``log(1 + exp(x))`` and its derivative, stable for any x, in the
    precision of ``like``: with z = exp(-|x|), max(x, 0) + log1p(z) and
    1 / (1 + z) or z / (1 + z)."""
    z = exp_as(-abs(x), like)
    softplus = (x if x > 0 else 0.0) + log1p_as(z, like)
    return softplus, (1.0 if x >= 0 else z) / (1.0 + z)


# --- elementwise terms: (t, p, a, b) -> (value, d value / d p) ---------------


@inlined
def squared_error(t, p, a, b):  # type: ignore[no-untyped-def]
    d = p - t
    return d * d, d + d


@inlined
def absolute_error(t, p, a, b):  # type: ignore[no-untyped-def]
    d = p - t
    return abs(d), sign(d)


@inlined
def absolute_percentage_error(t, p, a, b):  # type: ignore[no-untyped-def]
    # a = epsilon
    scale = max(abs(t), a)
    d = p - t
    return 100.0 * abs(d) / scale, 100.0 * sign(d) / scale


@inlined
def squared_logarithmic_error(t, p, a, b):  # type: ignore[no-untyped-def]
    # a = epsilon
    p_clamped, dp = clamp_below(p, a)
    t_clamped, _ = clamp_below(t, a)
    d = log_as(p_clamped + 1.0, p) - log_as(t_clamped + 1.0, p)
    return d * d, 2.0 * d * dp / (p_clamped + 1.0)


@inlined
def huber(t, p, a, b):  # type: ignore[no-untyped-def]
    # a = delta
    e = p - t
    abs_e = abs(e)
    q = min(abs_e, a)
    value = 0.5 * (q * q) + a * (abs_e - q)  # q * q overflows as the reference's square
    return value, (e if abs_e <= a else a * sign(e))


@inlined
def log_cosh(t, p, a, b):  # type: ignore[no-untyped-def]
    # e + softplus(-2e) - log 2 = |e| + log1p(z) - log 2, z = exp(-2|e|);
    # the derivative is tanh(e) = sign(e) (1 - z) / (1 + z)
    e = p - t
    z = exp_as(-2.0 * abs(e), p)
    magnitude = (1.0 - z) / (1.0 + z)
    return abs(e) + log1p_as(z, p) - LOG2, (magnitude if e >= 0 else -magnitude)


@inlined
def poisson(t, p, a, b):  # type: ignore[no-untyped-def]
    # a = epsilon
    return p - t * log_as(p + a, p), 1.0 - t / (p + a)


@inlined
def kl_divergence(t, p, a, b):  # type: ignore[no-untyped-def]
    # a = epsilon; summed, not averaged, over the last axis
    t_clipped, _ = clip(t, a, 1.0)
    p_clipped, dp = clip(p, a, 1.0)
    return t_clipped * log_as(t_clipped / p_clipped, p), -t_clipped / p_clipped * dp


@inlined
def binary_crossentropy(t, p, a, b):  # type: ignore[no-untyped-def]
    # a = epsilon, b = label smoothing
    t = t * (1.0 - b) + 0.5 * b
    # 1 - epsilon in the input's precision (in float32 it rounds to 1 - 2**-23)
    p_clipped, dp = clip(p, a, cast_as(1.0 - a, p))
    value = -(t * log_as(p_clipped, p) + (1.0 - t) * log_as(1.0 - p_clipped, p))
    return value, -(t / p_clipped - (1.0 - t) / (1.0 - p_clipped)) * dp


@inlined
def binary_crossentropy_from_logits(t, p, a, b):  # type: ignore[no-untyped-def]
    # b = label smoothing
    # t softplus(-p) + (1 - t) softplus(p) = softplus(p) - t p
    t = t * (1.0 - b) + 0.5 * b
    softplus, sigmoid = softplus_and_sigmoid(p, p)
    return softplus - t * p, sigmoid - t


@inlined
def hinge(t, p, a, b):  # type: ignore[no-untyped-def]
    # a = 1: convert 0/1 labels to -1/1; b = 1: squared hinge
    s = 2.0 * t - 1.0 if a else t
    margin = 1.0 - s * p
    # Selects, not branches (random margins would mispredict); NaN propagates;
    # the tie of maximum(margin, 0) halves the slope, as in JAX and torch.
    positive = 0.0 if margin < 0 else margin
    slope = 1.0 if margin > 0 else (0.5 if margin == 0 else 0.0)
    if b:
        return positive * positive, -2.0 * positive * s
    return positive, -s * slope


# --- generic bodies --------------------------------------------------------


@inlined
def forward_body(t, p, w, w_step, a, b, term, divisor):  # type: ignore[no-untyped-def]
    """sum_i w_i * (sum_j term(t_ij, p_ij) / divisor)"""
    total = 0.0
    for i in prange(p.shape[0]):
        row = 0.0
        for j in range(p.shape[1]):
            x, y = t[i, j], p[i, j]
            value, _ = term(x, y, a, b)
            row += value + finite_guard(x * y)
        total += w[i * w_step] * (row / divisor)
    return total


@inlined
def forward_backward_body(t, p, w, w_step, a, b, scale, grad, term, divisor):  # type: ignore[no-untyped-def]
    """:func:`forward_body`, writing ``grad = scale * d total / d p``."""
    total = 0.0
    for i in prange(p.shape[0]):
        weight = w[i * w_step]
        factor = scale * weight / divisor
        row = 0.0
        for j in range(p.shape[1]):
            x, y = t[i, j], p[i, j]
            value, derivative = term(x, y, a, b)
            row += value + finite_guard(x * y + derivative)
            grad[i, j] = factor * derivative
        total += weight * (row / divisor)
    return total


@entry_point
def hinge_checked_forward(t, p, w, w_step, a, b):  # type: ignore[no-untyped-def]
    """Hinge totals with and without label conversion, and the count of
    non-binary labels, in one pass (so the choice needs no extra read)."""
    converted = 0.0
    raw = 0.0
    non_binary = 0
    divisor = p.shape[1]
    for i in prange(p.shape[0]):
        row_converted = 0.0
        row_raw = 0.0
        row_non_binary = 0
        for j in range(p.shape[1]):
            x, y = t[i, j], p[i, j]
            guard = finite_guard(x * y)
            value, _ = hinge(x, y, 1, b)
            row_converted += value + guard
            value, _ = hinge(x, y, 0, b)
            row_raw += value + guard
            row_non_binary += 0 if (x == 0 or x == 1) else 1
        converted += w[i * w_step] * (row_converted / divisor)
        raw += w[i * w_step] * (row_raw / divisor)
        non_binary += row_non_binary
    return converted, raw, non_binary


@entry_point
def hinge_checked_forward_backward(t, p, w, w_step, a, b, scale, grad):  # type: ignore[no-untyped-def]
    """Forward+backward of the hinge with 0/1 labels converted, also returning
    the count of non-binary labels: if it is not 0, the caller reruns the
    generic kernel without conversion (rare, and then one more pass)."""
    total = 0.0
    non_binary = 0
    divisor = p.shape[1]
    for i in prange(p.shape[0]):
        weight = w[i * w_step]
        factor = scale * weight / divisor
        row = 0.0
        row_non_binary = 0
        for j in range(p.shape[1]):
            x, y = t[i, j], p[i, j]
            value, derivative = hinge(x, y, 1, b)
            row += value + finite_guard(x * y + derivative)
            grad[i, j] = factor * derivative
            row_non_binary += 0 if (x == 0 or x == 1) else 1
        total += weight * (row / divisor)
        non_binary += row_non_binary
    return total, non_binary


# One pair of entry points per term, at module level so Numba can cache them
# (a factory's closures would share one cache entry).  The divisor is the
# number of features for averaged terms and 1 for summed ones (KL).


@entry_point
def squared_error_forward(t, p, w, w_step, a, b):  # type: ignore[no-untyped-def]
    return forward_body(t, p, w, w_step, a, b, squared_error, p.shape[1])


@entry_point
def squared_error_forward_backward(t, p, w, w_step, a, b, scale, grad):  # type: ignore[no-untyped-def]
    return forward_backward_body(t, p, w, w_step, a, b, scale, grad, squared_error, p.shape[1])


@entry_point
def absolute_error_forward(t, p, w, w_step, a, b):  # type: ignore[no-untyped-def]
    return forward_body(t, p, w, w_step, a, b, absolute_error, p.shape[1])


@entry_point
def absolute_error_forward_backward(t, p, w, w_step, a, b, scale, grad):  # type: ignore[no-untyped-def]
    return forward_backward_body(t, p, w, w_step, a, b, scale, grad, absolute_error, p.shape[1])


@entry_point
def absolute_percentage_error_forward(t, p, w, w_step, a, b):  # type: ignore[no-untyped-def]
    return forward_body(t, p, w, w_step, a, b, absolute_percentage_error, p.shape[1])


@entry_point
def absolute_percentage_error_forward_backward(t, p, w, w_step, a, b, scale, grad):  # type: ignore[no-untyped-def]
    return forward_backward_body(
        t, p, w, w_step, a, b, scale, grad, absolute_percentage_error, p.shape[1]
    )


@entry_point
def squared_logarithmic_error_forward(t, p, w, w_step, a, b):  # type: ignore[no-untyped-def]
    return forward_body(t, p, w, w_step, a, b, squared_logarithmic_error, p.shape[1])


@entry_point
def squared_logarithmic_error_forward_backward(t, p, w, w_step, a, b, scale, grad):  # type: ignore[no-untyped-def]
    return forward_backward_body(
        t, p, w, w_step, a, b, scale, grad, squared_logarithmic_error, p.shape[1]
    )


@entry_point
def huber_forward(t, p, w, w_step, a, b):  # type: ignore[no-untyped-def]
    return forward_body(t, p, w, w_step, a, b, huber, p.shape[1])


@entry_point
def huber_forward_backward(t, p, w, w_step, a, b, scale, grad):  # type: ignore[no-untyped-def]
    return forward_backward_body(t, p, w, w_step, a, b, scale, grad, huber, p.shape[1])


@entry_point
def log_cosh_forward(t, p, w, w_step, a, b):  # type: ignore[no-untyped-def]
    return forward_body(t, p, w, w_step, a, b, log_cosh, p.shape[1])


@entry_point
def log_cosh_forward_backward(t, p, w, w_step, a, b, scale, grad):  # type: ignore[no-untyped-def]
    return forward_backward_body(t, p, w, w_step, a, b, scale, grad, log_cosh, p.shape[1])


@entry_point
def poisson_forward(t, p, w, w_step, a, b):  # type: ignore[no-untyped-def]
    return forward_body(t, p, w, w_step, a, b, poisson, p.shape[1])


@entry_point
def poisson_forward_backward(t, p, w, w_step, a, b, scale, grad):  # type: ignore[no-untyped-def]
    return forward_backward_body(t, p, w, w_step, a, b, scale, grad, poisson, p.shape[1])


@entry_point
def kl_divergence_forward(t, p, w, w_step, a, b):  # type: ignore[no-untyped-def]
    return forward_body(t, p, w, w_step, a, b, kl_divergence, 1.0)


@entry_point
def kl_divergence_forward_backward(t, p, w, w_step, a, b, scale, grad):  # type: ignore[no-untyped-def]
    return forward_backward_body(t, p, w, w_step, a, b, scale, grad, kl_divergence, 1.0)


@entry_point
def binary_crossentropy_forward(t, p, w, w_step, a, b):  # type: ignore[no-untyped-def]
    return forward_body(t, p, w, w_step, a, b, binary_crossentropy, p.shape[1])


@entry_point
def binary_crossentropy_forward_backward(t, p, w, w_step, a, b, scale, grad):  # type: ignore[no-untyped-def]
    return forward_backward_body(
        t, p, w, w_step, a, b, scale, grad, binary_crossentropy, p.shape[1]
    )


@entry_point
def binary_crossentropy_from_logits_forward(t, p, w, w_step, a, b):  # type: ignore[no-untyped-def]
    return forward_body(t, p, w, w_step, a, b, binary_crossentropy_from_logits, p.shape[1])


@entry_point
def binary_crossentropy_from_logits_forward_backward(t, p, w, w_step, a, b, scale, grad):  # type: ignore[no-untyped-def]
    return forward_backward_body(
        t, p, w, w_step, a, b, scale, grad, binary_crossentropy_from_logits, p.shape[1]
    )


@entry_point
def hinge_forward(t, p, w, w_step, a, b):  # type: ignore[no-untyped-def]
    return forward_body(t, p, w, w_step, a, b, hinge, p.shape[1])


@entry_point
def hinge_forward_backward(t, p, w, w_step, a, b, scale, grad):  # type: ignore[no-untyped-def]
    return forward_backward_body(t, p, w, w_step, a, b, scale, grad, hinge, p.shape[1])


# --- binary focal crossentropy ------------------------------------------------
# Five constants: a = epsilon (unused from logits), b = label smoothing,
# c = gamma, and the class weights d (class 1) and e (class 0): alpha and
# 1 - alpha with class balancing, else 1 and 1.


@inlined
def power_two(m, gamma, like):  # type: ignore[no-untyped-def]
    """``m ** 2`` and its derivative (the default gamma): no exp or log."""
    return m * m, m + m


@inlined
def power_any(m, gamma, like):  # type: ignore[no-untyped-def]
    """``m ** gamma`` and its derivative in m.  m = 0 gives a NaN derivative,
    so the call goes to the reference (as m < 0 does, a NaN power)."""
    powered = exp_as(cast_as(gamma, like) * log_as(m, like), like)
    return powered, cast_as(gamma, like) * powered / m


# The focal terms do their elementwise math in the precision of y_pred, as
# the reference does (it casts y_true and the constants to y_pred's dtype):
# a float64 constant or label would widen float32 lanes to float64 and halve
# the SIMD width.  Only the sums are float64.


@inlined
def class_weight(t, d, e, like):  # type: ignore[no-untyped-def]
    """``t d + (1 - t) e``; exactly 1 without class balancing (d = e = 1),
    as the reference applies no weight there (for a label of 2^25 in
    float32, t + (1 - t) rounds to 0, which dropped the row)."""
    if d == 1.0 and e == 1.0:
        return cast_as(1.0, like)
    return t * cast_as(d, like) + (cast_as(1.0, like) - t) * cast_as(e, like)


@inlined
def binary_focal(t, p, a, b, c, d, e, power):  # type: ignore[no-untyped-def]
    # w (1 - p_t)^gamma bce with p_t = t p + (1 - t) (1 - p) (unclipped p,
    # as in the reference; the crossentropy clips p to [eps, 1 - eps])
    one = cast_as(1.0, p)
    t = cast_as(t, p) * cast_as(1.0 - b, p) + cast_as(0.5 * b, p)
    p_clipped, dp = clip(p, cast_as(a, p), cast_as(1.0 - a, p))
    bce = -(t * log_as(p_clipped, p) + (one - t) * log_as(one - p_clipped, p))
    # t / p - (1 - t) / (1 - p) over one denominator: one division, not two
    d_bce = (p_clipped - t) / (p_clipped * (one - p_clipped)) * cast_as(dp, p)
    focal, d_focal = power(one - (t * p + (one - t) * (one - p)), c, p)
    weight = class_weight(t, d, e, p)
    return weight * focal * bce, weight * (d_focal * (one - (t + t)) * bce + focal * d_bce)


@inlined
def binary_focal_from_logits(t, x, a, b, c, d, e, power):  # type: ignore[no-untyped-def]
    # bce = t softplus(-x) + (1 - t) softplus(x), d bce / dx = sigmoid(x) - t;
    # 1 - p_t = t sigmoid(-x) + (1 - t) sigmoid(x), whose derivative is
    # (1 - 2t) sigmoid(x) sigmoid(-x).  With z = exp(-|x|): softplus(+-x) =
    # max(+-x, 0) + log1p(z), and the sigmoids are 1 / (1 + z) and z / (1 + z).
    one, zero = cast_as(1.0, x), cast_as(0.0, x)
    t = cast_as(t, x) * cast_as(1.0 - b, x) + cast_as(0.5 * b, x)
    z = exp_as(-abs(x), x)
    shared = log1p_as(z, x)
    softplus_pos = (x if x > zero else zero) + shared
    softplus_neg = (-x if x < zero else zero) + shared
    inverse = one / (one + z)
    sigmoid_pos = inverse if x >= zero else z * inverse
    sigmoid_neg = z * inverse if x >= zero else inverse
    bce = t * softplus_neg + (one - t) * softplus_pos
    focal, d_focal = power(t * sigmoid_neg + (one - t) * sigmoid_pos, c, x)
    d_miss = (one - (t + t)) * sigmoid_pos * sigmoid_neg
    weight = class_weight(t, d, e, x)
    return weight * focal * bce, weight * (d_focal * d_miss * bce + focal * (sigmoid_pos - t))


@inlined
def focal_forward_body(t, p, w, w_step, a, b, c, d, e, term, power):  # type: ignore[no-untyped-def]
    """:func:`forward_body` for a term with five constants (averaged)."""
    total = 0.0
    divisor = p.shape[1]
    for i in prange(p.shape[0]):
        row = 0.0
        for j in range(p.shape[1]):
            x, y = t[i, j], p[i, j]
            value, _ = term(x, y, a, b, c, d, e, power)
            row += value + finite_guard(x * y)
        total += w[i * w_step] * (row / divisor)
    return total


@inlined
def focal_forward_backward_body(t, p, w, w_step, a, b, c, d, e, scale, grad, term, power):  # type: ignore[no-untyped-def]
    """:func:`forward_backward_body` for a term with five constants (averaged)."""
    total = 0.0
    divisor = p.shape[1]
    for i in prange(p.shape[0]):
        weight = w[i * w_step]
        factor = scale * weight / divisor
        row = 0.0
        for j in range(p.shape[1]):
            x, y = t[i, j], p[i, j]
            value, derivative = term(x, y, a, b, c, d, e, power)
            row += value + finite_guard(x * y + derivative)
            grad[i, j] = factor * derivative
        total += weight * (row / divisor)
    return total


# gamma = 2 (the default) gets its own loop, without exp and log: a branch on
# gamma inside the loop would keep LLVM from vectorising it.


@entry_point
def binary_focal_forward(t, p, w, w_step, a, b, c, d, e):  # type: ignore[no-untyped-def]
    if c == 2.0:
        return focal_forward_body(t, p, w, w_step, a, b, c, d, e, binary_focal, power_two)
    return focal_forward_body(t, p, w, w_step, a, b, c, d, e, binary_focal, power_any)


@entry_point
def binary_focal_forward_backward(t, p, w, w_step, a, b, c, d, e, scale, grad):  # type: ignore[no-untyped-def]
    if c == 2.0:
        return focal_forward_backward_body(
            t, p, w, w_step, a, b, c, d, e, scale, grad, binary_focal, power_two
        )
    return focal_forward_backward_body(
        t, p, w, w_step, a, b, c, d, e, scale, grad, binary_focal, power_any
    )


@entry_point
def binary_focal_from_logits_forward(t, p, w, w_step, a, b, c, d, e):  # type: ignore[no-untyped-def]
    term = binary_focal_from_logits
    if c == 2.0:
        return focal_forward_body(t, p, w, w_step, a, b, c, d, e, term, power_two)
    return focal_forward_body(t, p, w, w_step, a, b, c, d, e, term, power_any)


@entry_point
def binary_focal_from_logits_forward_backward(t, p, w, w_step, a, b, c, d, e, scale, grad):  # type: ignore[no-untyped-def]
    term = binary_focal_from_logits
    if c == 2.0:
        return focal_forward_backward_body(
            t, p, w, w_step, a, b, c, d, e, scale, grad, term, power_two
        )
    return focal_forward_backward_body(t, p, w, w_step, a, b, c, d, e, scale, grad, term, power_any)
