"""Sequence losses: CTC (Connectionist Temporal Classification).

Labels are ``(batch, max_label_length)`` integers in which 0 is both the
blank and the padding: a sequence's label length is its count of non-zero
entries, and its first ``label_length`` entries are its label sequence (as in
Keras 3, which counts rather than trims: a 0 before the last non-zero label
is read as the blank class). Pad with 0, not -1 (TF-era code padded with -1,
which counts as a label here, as in Keras 3). Logits are
``(batch, time, classes)`` and every sequence uses all ``time`` steps.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import array_api_compat

from losskit import _array
from losskit._array import Array, Namespace
from losskit.functional.probabilistic import log_softmax

__all__ = ["LOG_ZERO", "ctc"]

LOG_ZERO = -1e5
"""The finite stand-in for ``log(0)`` in the recursion (Keras's and optax's):
a label sequence that no path of ``time`` steps can emit gets a loss of order
``1e5`` with a finite gradient instead of ``inf`` and NaN."""

_State = tuple[Array, Array]
_Step = Callable[[_State, tuple[Array, Array]], _State]


@_array.returns_array
def ctc(y_true: Any, y_pred: Any) -> Array:
    """CTC loss: the negative log-likelihood of each label sequence under the
    per-step softmax of the logits, summed over every alignment.

    With ``p = log_softmax(y_pred)``, the label sequence ``l`` of ``n =
    count(y_true != 0)`` entries, and blanks (class 0) allowed between labels
    and required between equal consecutive labels::

        loss = -log(sum over alignments a of l to T steps: exp(sum_t p[t, a_t]))

    computed by the forward (alpha) recursion in log space over the states
    "after label k, in a blank" (``phi``, k = 0..n) and "emitting label k"
    (``emit``), with ``log(0)`` replaced by :data:`LOG_ZERO`. Float16 and
    bfloat16 logits are computed (and returned) in float32, as in Keras.

    Args:
        y_true: integer labels of shape ``(batch, max_label_length)``; 0 is the
            blank and the padding.
        y_pred: logits of shape ``(batch, time, classes)`` (not softmaxed).

    Returns:
        The loss per sequence, shape ``(batch,)``.

    >>> import numpy as np
    >>> import losskit
    >>> logits = (np.arange(24.0).reshape((2, 4, 3)) - 12) / 100
    >>> losskit.ctc([[1, 2, 1, 0], [1, 2, 0, 2]], logits)
    array([2.4429..., 2.4543...])
    """
    xp, labels, logits = _ctc_inputs(y_true, y_pred)
    label_length = xp.sum(xp.astype(labels != 0, xp.int32), axis=-1)
    labels = xp.astype(labels, xp.int32)
    log_probs = log_softmax(xp, logits, axis=-1)
    classes = xp.arange(logits.shape[-1], dtype=xp.int32, device=_array.device_of(logits))
    # one_hot[b, n, k]: label n of sequence b is class k (no class for labels
    # outside [0, classes), whose emissions then have log-probability 0, as in Keras)
    one_hot = xp.astype(labels[:, :, None] == classes, logits.dtype)
    emit_log_probs = xp.matmul(log_probs, xp.permute_dims(one_hot, (0, 2, 1)))  # (B, T, N)
    blank_log_probs = log_probs[:, :, :1]  # (B, T, 1)
    # repeat[b, n]: label n + 1 repeats label n (never for the last label)
    repeat = xp.astype(labels[:, :-1] == labels[:, 1:], logits.dtype)
    repeat = xp.concat([repeat, xp.zeros_like(log_probs[:, 0, :1])], axis=1)  # (B, N)

    batch, steps, _ = logits.shape
    length = labels.shape[1]
    phi = xp.full(
        (batch, length + 1), LOG_ZERO, dtype=logits.dtype, device=_array.device_of(logits)
    )
    phi = xp.concat([xp.zeros_like(phi[:, :1]), phi[:, 1:]], axis=1)
    emit = xp.full((batch, length), LOG_ZERO, dtype=logits.dtype, device=_array.device_of(logits))
    step = _recursion_step(xp, repeat)
    phi, emit = _scan(xp, step, (phi, emit), emit_log_probs, blank_log_probs, steps)
    final = _add_to_later_phis(xp, phi, emit)  # the last emit-to-blank transition
    positions = xp.arange(length + 1, dtype=xp.int32, device=_array.device_of(logits))
    at_length = xp.astype(positions == label_length[:, None], logits.dtype)
    return -xp.sum(final * at_length, axis=-1)


def _ctc_inputs(y_true: Any, y_pred: Any) -> tuple[Namespace, Array, Array]:
    xp, logits = _array.prediction_array(y_pred)
    labels = _array.as_array(xp, y_true, "y_true", device=_array.device_of(logits))
    _array.check_known_shape(labels, "y_true", "ctc")
    _array.check_known_shape(logits, "y_pred", "ctc")
    if labels.ndim != 2:
        raise ValueError(
            "ctc: `y_true` must be integer labels of shape (batch_size, max_label_length). "
            f"Received: y_true.shape={tuple(labels.shape)}."
        )
    if logits.ndim != 3:
        raise ValueError(
            "ctc: `y_pred` must be logits of shape (batch_size, time_steps, num_classes). "
            f"Received: y_pred.shape={tuple(logits.shape)}."
        )
    if not _array.same_shape(labels.shape[:1], logits.shape[:1]) or labels.shape[1] == 0:
        raise ValueError(
            "ctc: `y_true` (batch_size, max_label_length) and `y_pred` (batch_size, "
            "time_steps, num_classes) must have the same batch size and max_label_length "
            f">= 1. Received: y_true.shape={tuple(labels.shape)}, "
            f"y_pred.shape={tuple(logits.shape)}."
        )
    # Keras computes in float32 at least: float16 sums of ~1e5 overflow
    wide = _array.accumulation_dtype(xp, logits.dtype)
    return xp, labels, logits if wide == logits.dtype else xp.astype(logits, wide)


def _add_to_later_phis(xp: Namespace, phi: Array, added: Array) -> Array:
    """``phi[:, 1:] = logaddexp(phi[:, 1:], added)``, out of place."""
    return xp.concat([phi[:, :1], _array.logaddexp(xp, phi[:, 1:], added)], axis=1)


def _recursion_step(xp: Namespace, repeat: Array) -> _Step:
    """One time step of the alpha recursion, given the step's emission and
    blank log-probabilities ``(B, N)`` and ``(B, 1)``."""
    blocked_if_repeat = LOG_ZERO * repeat  # emit -> next label needs a blank in between
    blocked_unless_repeat = LOG_ZERO * (1.0 - repeat)

    def step(state: _State, log_probs: tuple[Array, Array]) -> _State:
        phi, emit = state
        emit_log_prob, blank_log_prob = log_probs
        # from label k to state k+1 without a step (barred if label k+1 repeats k)
        entered_tail = _array.logaddexp(xp, phi[:, 1:], emit + blocked_if_repeat)
        entered = xp.concat([phi[:, :1], entered_tail], axis=1)
        # emit label k+1: entering it from state k, or staying on it
        next_emit = _array.logaddexp(xp, entered[:, :-1], emit) + emit_log_prob
        # a blank: staying in state k, or from label k when label k+1 repeats it
        later = _array.logaddexp(xp, entered_tail, emit + blocked_unless_repeat) + blank_log_prob
        next_phi = xp.concat([phi[:, :1] + blank_log_prob, later], axis=1)
        return next_phi, next_emit

    return step


def _scan(
    xp: Namespace,
    step: _Step,
    state: _State,
    emit_log_probs: Array,
    blank_log_probs: Array,
    steps: int,
) -> _State:
    """Run ``step`` over the time axis (axis 1): ``jax.lax.scan`` on JAX (one
    traced step instead of ``steps`` unrolled ones), a Python loop elsewhere."""
    if array_api_compat.is_jax_namespace(xp):
        lax = sys.modules["jax"].lax
        xs = (
            xp.permute_dims(emit_log_probs, (1, 0, 2)),
            xp.permute_dims(blank_log_probs, (1, 0, 2)),
        )
        final, _ = lax.scan(lambda carry, x: (step(carry, x), None), state, xs)
        return final
    for t in range(steps):
        state = step(state, (emit_log_probs[:, t, :], blank_log_probs[:, t, :]))
    return state
