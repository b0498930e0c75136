"""exp, log and log1p that LLVM can vectorise inside Numba loops.

Numba lowers ``math.exp`` and ``math.log`` to scalar calls into the C library,
so a loop that uses them runs one element at a time.  These versions are
branch-free arithmetic on float64 (range reduction by bit manipulation, then a
polynomial), so the loops that inline them vectorise like any other
arithmetic.  There are float64 and float32 versions (the float32 ones use
shorter polynomials on twice as many SIMD lanes); the kernels call
``log_as(x, like)`` and friends, which pick the version by the type of
``like``, an element of the input: a float32 loss is computed in float32, as
Keras computes it.

Accuracy: within 2.5 ulp of the correctly rounded result in either precision
over the whole range (tested against NumPy in ``tests/test_vmath.py``).  Special
values follow C99: ``log(0) = -inf``, ``log(x < 0) = nan``, ``log(inf) = inf``,
``exp(-inf) = 0``, ``exp(inf) = inf``, NaN propagates.

The functions are compiled with no fast-math flag but ``contract`` (fused
multiply-add), set explicitly: Numba would otherwise let them inherit a
fast-math caller's flags, and reassociation undoes the range reductions and
log1p's correction (``(1 + x) - 1 - x`` becomes 0).  LLVM keeps each
instruction's flags when it inlines them into a fast-math loop.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload


@intrinsic
def _bits(typingctx, x):  # type: ignore[no-untyped-def]
    """The IEEE-754 bits of a float64, as an int64."""
    if x != types.float64:
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


@intrinsic
def _from_bits(typingctx, n):  # type: ignore[no-untyped-def]
    """The float64 whose IEEE-754 bits are the int64 ``n``."""
    if n != types.int64:
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@intrinsic
def _from_bits32(typingctx, n):  # type: ignore[no-untyped-def]
    """The float32 whose IEEE-754 bits are the low 32 bits of the integer ``n``."""
    if not isinstance(n, types.Integer):
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        low = args[0] if n.bitwidth == 32 else builder.trunc(args[0], ir.IntType(32))
        return builder.bitcast(low, ir.FloatType())

    return types.float32(n), codegen


@intrinsic
def _mantissa_and_exponent32(typingctx, x):  # type: ignore[no-untyped-def]
    """``(m, k)`` with ``x = m * 2**k``, ``m`` in [sqrt(1/2), sqrt(2)) and ``k``
    an integer (as a float32), for positive normal float32 ``x``: by 32-bit
    integer operations on the bits (Numba would widen them to 64 bits, which
    halves the SIMD lanes)."""
    if x != types.float32:
        return None
    result = types.UniTuple(types.float32, 2)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        i32 = ir.IntType(32)
        bits = builder.bitcast(args[0], i32)
        sqrt_half = ir.Constant(i32, 0x3F3504F3)  # the bits of sqrt(1/2), rounded down
        k = builder.ashr(builder.sub(bits, sqrt_half), ir.Constant(i32, 23))
        m_bits = builder.sub(bits, builder.shl(k, ir.Constant(i32, 23)))
        m = builder.bitcast(m_bits, ir.FloatType())
        k_float = builder.sitofp(k, ir.FloatType())
        return context.make_tuple(builder, result, [m, k_float])

    return result(types.float32), codegen


def _split(value: Fraction, bits: int = 33) -> tuple[float, float]:
    """``value`` as ``high + low``, ``high`` with only ``bits`` significant
    bits (so ``k * high`` is exact for small integers ``k``)."""
    mantissa, exponent = math.frexp(float(value))
    high = math.ldexp(math.floor(mantissa * 2**bits) / 2**bits, exponent)
    return high, float(value - Fraction(high))


def _ln2() -> Fraction:
    # ln 2 = 2 atanh(1/3) = 2 sum_n (1/3)^(2n+1) / (2n+1), to far beyond float64
    return 2 * sum((Fraction(1, (2 * n + 1) * 3 ** (2 * n + 1)) for n in range(60)), Fraction(0))


LN2_HIGH, LN2_LOW = _split(_ln2())
INV_LN2 = float(1 / _ln2())
SQRT_HALF_BITS = 0x3FE6A09E667F3BCD  # the bits of sqrt(1/2), rounded down
SMALLEST_NORMAL = 2.2250738585072014e-308
TWO_54 = 2.0**54
# 2 atanh(s) = 2 s (1 + s^2/3 + s^4/5 + ...): |s| <= 0.1716, so the terms
# after s^20 are below 1e-17 of the first.
ATANH_SERIES = tuple(1.0 / (2 * n + 1) for n in range(11))
# exp(r) for |r| <= ln(2)/2: Taylor terms up to r^13 (the next is below 1e-17).
EXP_SERIES = tuple(1.0 / math.factorial(n) for n in range(14))
EXP_LOWEST = -746.0  # exp is 0 below (after rounding)
EXP_HIGHEST = 710.0  # and inf above


@njit(inline="always", error_model="numpy")
def _horner(x, coefficients):  # type: ignore[no-untyped-def]
    """``c[0] + c[1] x + ... + c[n-1] x^(n-1)`` by Horner's rule (n is a
    compile-time constant, so LLVM unrolls the loop)."""
    n = len(coefficients)
    result = coefficients[n - 1]
    for k in range(n - 2, -1, -1):
        result = result * x + coefficients[k]
    return result


@njit(inline="always", error_model="numpy")
def _log_of_mantissa(s):  # type: ignore[no-untyped-def]
    z = s * s
    poly = _horner(z, ATANH_SERIES[1:])
    return 2.0 * s + 2.0 * s * z * poly


@njit(error_model="numpy", fastmath={"contract"})
def vlog(x):  # type: ignore[no-untyped-def]
    """Natural logarithm of a float (computed in float64)."""
    x = float(x)
    subnormal = x < SMALLEST_NORMAL
    scaled = x * TWO_54 if subnormal else x
    bits = _bits(scaled)
    # k: the exponent that brings the mantissa m into [sqrt(1/2), sqrt(2))
    k = (bits - SQRT_HALF_BITS) >> 52
    m = _from_bits(bits - (k << 52))
    f = m - 1.0
    s = f / (2.0 + f)
    exponent = float(k) - (54.0 if subnormal else 0.0)
    result = exponent * LN2_HIGH + (_log_of_mantissa(s) + exponent * LN2_LOW)
    result = -math.inf if x == 0.0 else result
    result = math.nan if x < 0.0 else result
    return x if (x == math.inf) | (x != x) else result


@njit(error_model="numpy", fastmath={"contract"})
def vexp(x):  # type: ignore[no-untyped-def]
    """Exponential of a float (computed in float64)."""
    x = float(x)
    clamped = EXP_LOWEST if x < EXP_LOWEST else (EXP_HIGHEST if x > EXP_HIGHEST else x)
    k = np.floor(clamped * INV_LN2 + 0.5)
    r = (clamped - k * LN2_HIGH) - k * LN2_LOW
    poly = _horner(r, EXP_SERIES)
    # 2^k in two factors, each a normal float64 even where 2^k is not
    whole = int(k)
    half = whole >> 1
    first = _from_bits((half + 1023) << 52)
    second = _from_bits((whole - half + 1023) << 52)
    result = poly * first * second
    return x if x != x else result


@njit(error_model="numpy", fastmath={"contract"})
def vlog1p(x):  # type: ignore[no-untyped-def]
    """``log(1 + x)``, accurate for small x (computed in float64)."""
    x = float(x)
    u = 1.0 + x
    # log(u) is off by the rounding of 1 + x; u - 1 - x recovers it
    finite = (u != 0.0) & (u != math.inf)
    correction = ((u - 1.0) - x) / u if finite else 0.0
    return vlog(u) - correction


# --- float32 ------------------------------------------------------------------------

_F = np.float32
_LN2_HIGH_32, _LN2_LOW_32 = (_F(v) for v in _split(_ln2(), bits=12))
_INV_LN2_32 = _F(INV_LN2)
_SMALLEST_NORMAL_32 = _F(1.1754943508222875e-38)
_TWO_23 = _F(2.0**23)
_ONE_32, _TWO_32, _HALF_32, _ZERO_32 = _F(1.0), _F(2.0), _F(0.5), _F(0.0)
_INF_32, _NAN_32 = _F(math.inf), _F(math.nan)
# |s| <= 0.1716: terms after s^8 are below 3e-9 of the first
ATANH_SERIES_32 = tuple(_F(1.0 / (2 * n + 1)) for n in range(5))
# |r| <= ln(2)/2: Taylor terms up to r^7 (the next is below 6e-9)
EXP_SERIES_32 = tuple(_F(1.0 / math.factorial(n)) for n in range(8))
EXP_LOWEST_32, EXP_HIGHEST_32 = _F(-104.0), _F(89.0)


@njit(error_model="numpy", fastmath={"contract"})
def vlog32(x):  # type: ignore[no-untyped-def]
    """Natural logarithm of a float32, in float32."""
    subnormal = x < _SMALLEST_NORMAL_32
    scaled = x * _TWO_23 if subnormal else x
    m, k = _mantissa_and_exponent32(scaled)
    f = m - _ONE_32
    s = f / (_TWO_32 + f)
    z = s * s
    poly = _horner(z, ATANH_SERIES_32[1:])
    exponent = k - (_F(23.0) if subnormal else _ZERO_32)
    two_s = _TWO_32 * s
    result = exponent * _LN2_HIGH_32 + (two_s + (two_s * z * poly + exponent * _LN2_LOW_32))
    result = -_INF_32 if x == _ZERO_32 else result
    result = _NAN_32 if x < _ZERO_32 else result
    return x if (x == _INF_32) | (x != x) else result


@njit(error_model="numpy", fastmath={"contract"})
def vexp32(x):  # type: ignore[no-untyped-def]
    """Exponential of a float32, in float32."""
    clamped = EXP_LOWEST_32 if x < EXP_LOWEST_32 else (EXP_HIGHEST_32 if x > EXP_HIGHEST_32 else x)
    k = np.floor(clamped * _INV_LN2_32 + _HALF_32)
    r = (clamped - k * _LN2_HIGH_32) - k * _LN2_LOW_32
    poly = _horner(r, EXP_SERIES_32)
    whole = np.int32(k)
    half = whole >> np.int32(1)
    shift, bias = np.int32(23), np.int32(127)  # mantissa bits, exponent bias
    first = _from_bits32((half + bias) << shift)
    second = _from_bits32((whole - half + bias) << shift)
    result = poly * first * second
    return x if x != x else result


@njit(error_model="numpy", fastmath={"contract"})
def vlog1p32(x):  # type: ignore[no-untyped-def]
    """``log(1 + x)`` of a float32, in float32, accurate for small x."""
    u = _ONE_32 + x
    finite = (u != _ZERO_32) & (u != _INF_32)
    correction = ((u - _ONE_32) - x) / u if finite else _ZERO_32
    return vlog32(u) - correction


# --- the precision of the input -------------------------------------------------------


def log_as(x, like):  # type: ignore[no-untyped-def]
    """``log(x)`` in the precision of ``like`` (Numba only)."""
    raise NotImplementedError("log_as is for Numba-compiled code")


def exp_as(x, like):  # type: ignore[no-untyped-def]
    """``exp(x)`` in the precision of ``like`` (Numba only)."""
    raise NotImplementedError("exp_as is for Numba-compiled code")


def log1p_as(x, like):  # type: ignore[no-untyped-def]
    """``log1p(x)`` in the precision of ``like`` (Numba only)."""
    raise NotImplementedError("log1p_as is for Numba-compiled code")


def cast_as(x, like):  # type: ignore[no-untyped-def]
    """``x`` in the precision of ``like`` (Numba only)."""
    raise NotImplementedError("cast_as is for Numba-compiled code")


def _in_precision_of(single, double):  # type: ignore[no-untyped-def]
    def typer(x, like):  # type: ignore[no-untyped-def]
        if like == types.float32:
            return lambda x, like: single(np.float32(x))
        return lambda x, like: double(np.float64(x))

    return typer


overload(log_as, inline="always")(_in_precision_of(vlog32, vlog))
overload(exp_as, inline="always")(_in_precision_of(vexp32, vexp))
overload(log1p_as, inline="always")(_in_precision_of(vlog1p32, vlog1p))


@overload(cast_as, inline="always")
def _cast_as(x, like):  # type: ignore[no-untyped-def]
    if like == types.float32:
        return lambda x, like: np.float32(x)
    return lambda x, like: np.float64(x)
