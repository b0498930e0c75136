"""Rows outside a loss's domain: counted batch by batch, reported per loss.

Every built-in loss declares the inputs it is meant for (``LossSpec.domain``
in :mod:`losskit.spec`, a key of ``DOMAINS``).  Keras computes a number for
any input, so binary crossentropy on regression targets gives a negative
"loss" without complaint; ``losskit evaluate`` counts, per loss, the rows
whose targets or predictions fall outside that domain, warns with the count
and, with ``--strict``, fails.  A domain this module has no check for (or a
loss without a spec) is not checked.

>>> import numpy as np
>>> from losskit import BinaryCrossentropy
>>> checks = DomainChecks([BinaryCrossentropy()])
>>> checks.update(np.array([[0.0], [2.0], [1.0]]), np.array([[0.5], [0.5], [1.5]]))
>>> checks.violations()
{'binary_crossentropy': (2, ['targets outside [0, 1]', 'predictions outside [0, 1]'])}
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from losskit.losses import Loss

Rows = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _rows(bad: np.ndarray) -> np.ndarray:
    """Per row: whether any of its entries is flagged."""
    return np.asarray(bad.reshape(bad.shape[0], -1).any(axis=1))


def _outside_unit(a: np.ndarray) -> np.ndarray:
    return _rows((a < 0) | (a > 1))


def _negative(a: np.ndarray) -> np.ndarray:
    return _rows(a < 0)


def _not_sign_labels(a: np.ndarray) -> np.ndarray:
    return _rows((a != -1) & (a != 0) & (a != 1))


def _not_binary(a: np.ndarray) -> np.ndarray:
    return _rows((a != 0) & (a != 1))


def _zero(a: np.ndarray) -> np.ndarray:
    return _rows(a == 0)


def _bad_class_index(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    classes = p.shape[-1] if p.ndim > 1 else 1
    return _rows((t < 0) | (t >= classes) | (t != np.floor(t)))


@dataclass(frozen=True)
class Check:
    """One condition on (y_true, y_pred): per row, whether it is violated;
    ``clear``, where given, proves from a reduction or two (no temporary
    array) that no row is (False: look row by row)."""

    what: str
    rows: Rows
    clear: Callable[[np.ndarray, np.ndarray], bool] | None = None


def _nonnegative(a: np.ndarray) -> bool:
    return bool(a.size == 0 or np.min(a) >= 0)  # a NaN minimum compares False


def _in_unit(a: np.ndarray) -> bool:
    return bool(a.size == 0 or (np.min(a) >= 0 and np.max(a) <= 1))


def _no_zero(a: np.ndarray) -> bool:
    return bool(a.size == 0 or np.min(a) > 0 or np.max(a) < 0)


TARGETS_IN_UNIT = Check(
    "targets outside [0, 1]", lambda t, p: _outside_unit(t), lambda t, p: _in_unit(t)
)
PREDICTIONS_IN_UNIT = Check(
    "predictions outside [0, 1]", lambda t, p: _outside_unit(p), lambda t, p: _in_unit(p)
)
NEGATIVE_PREDICTIONS = Check(
    "negative predictions", lambda t, p: _negative(p), lambda t, p: _nonnegative(p)
)
CLASS_INDICES = Check(
    "targets that are not class indices 0 to k-1, k the width of the predictions",
    _bad_class_index,
)

CHECKS: dict[str, tuple[Check, ...]] = {
    "real": (),
    "nonzero_targets": (
        Check(
            "targets equal to 0, divided by epsilon",
            lambda t, p: _zero(t),
            lambda t, p: _no_zero(t),
        ),
    ),
    "above_minus_one": (
        Check(
            "negative targets, clipped to 0",
            lambda t, p: _negative(t),
            lambda t, p: _nonnegative(t),
        ),
        Check(
            "negative predictions, clipped to 0",
            lambda t, p: _negative(p),
            lambda t, p: _nonnegative(p),
        ),
    ),
    "signs": (Check("labels other than -1 and 1, or 0 and 1", lambda t, p: _not_sign_labels(t)),),
    "binary_scores": (Check("labels other than 0 and 1", lambda t, p: _not_binary(t)),),
    "one_hot_scores": (TARGETS_IN_UNIT,),
    "distributions": (
        Check(
            "targets outside [0, 1], clipped",
            lambda t, p: _outside_unit(t),
            lambda t, p: _in_unit(t),
        ),
        Check(
            "predictions outside [0, 1], clipped",
            lambda t, p: _outside_unit(p),
            lambda t, p: _in_unit(p),
        ),
    ),
    "counts": (
        Check("negative targets", lambda t, p: _negative(t), lambda t, p: _nonnegative(t)),
        NEGATIVE_PREDICTIONS,
    ),
    "binary_probabilities": (TARGETS_IN_UNIT, PREDICTIONS_IN_UNIT),
    "binary_logits": (TARGETS_IN_UNIT,),
    "categorical_probabilities": (TARGETS_IN_UNIT, NEGATIVE_PREDICTIONS),
    "categorical_logits": (TARGETS_IN_UNIT,),
    "sparse_probabilities": (CLASS_INDICES, NEGATIVE_PREDICTIONS),
    "sparse_logits": (CLASS_INDICES,),
    "masks": (TARGETS_IN_UNIT, PREDICTIONS_IN_UNIT),
}
"""The checks of each input domain of :data:`losskit.spec.DOMAINS`."""


def domain_of(loss: Loss) -> str | None:
    """The key of ``losskit.spec.DOMAINS`` for this loss and its arguments,
    or None for a loss without a spec."""
    from losskit import spec

    info = spec.spec_of(type(loss))
    if info is None:
        return None
    return info.input_domain(loss.get_config())


def _violations(check: Check, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray | None:
    """Per row, whether ``check`` is violated; None where none is."""
    if check.clear is not None and check.clear(y_true, y_pred):
        return None
    return check.rows(y_true, y_pred)


class DomainChecks:
    """Per loss, the number of rows outside its domain, and per check."""

    def __init__(self, losses: Sequence[Loss]) -> None:
        # Domain keys, not the checks themselves: this object is pickled
        # (Dask sends it between processes).
        self.domains: dict[str, str] = {}
        for loss in losses:
            domain = domain_of(loss)
            if domain is not None and CHECKS.get(domain):
                self.domains[loss.name] = domain
        self.rows = dict.fromkeys(self.domains, 0)
        self.by_check: dict[str, dict[str, int]] = {
            name: dict.fromkeys((c.what for c in CHECKS[domain]), 0)
            for name, domain in self.domains.items()
        }

    def update(self, y_true: np.ndarray, y_pred: np.ndarray) -> None:
        """Count a batch (rows on axis 0; NaN compares as inside)."""
        if not self.domains or y_true.shape[0] == 0:
            return
        seen: dict[int, np.ndarray | None] = {}  # one evaluation of each check a batch
        with np.errstate(invalid="ignore"):
            for name, domain in self.domains.items():
                union = np.zeros(y_true.shape[0], dtype=bool)
                for check in CHECKS[domain]:
                    if id(check) not in seen:
                        seen[id(check)] = _violations(check, y_true, y_pred)
                    bad = seen[id(check)]
                    if bad is not None:
                        self.by_check[name][check.what] += int(np.count_nonzero(bad))
                        union |= bad
                self.rows[name] += int(np.count_nonzero(union))

    def merge(self, other: DomainChecks) -> DomainChecks:
        for name, n in other.rows.items():
            self.rows[name] = self.rows.get(name, 0) + n
            mine = self.by_check.setdefault(name, {})
            for what, count in other.by_check[name].items():
                mine[what] = mine.get(what, 0) + count
        return self

    def violations(self) -> dict[str, tuple[int, list[str]]]:
        """Each loss with offending rows: (their number, what was wrong)."""
        return {
            name: (n, [what for what, count in self.by_check[name].items() if count])
            for name, n in self.rows.items()
            if n
        }


def describe(
    name: str, rows: int, total: int, problems: Sequence[str], strict: bool = False
) -> str:
    """One line saying which rows fall outside a loss's domain."""
    tail = "" if strict else " Its value may be meaningless for this data."
    return (
        f"{name}: {rows:,} of {total:,} rows are outside its domain: {'; '.join(problems)}.{tail}"
    )
