"""One specification per built-in loss: the single table every other part
of losskit reads.

A :class:`LossSpec` holds what is *about* a loss rather than its maths (which
lives once, in :mod:`losskit.functional`, and the class in
:mod:`losskit.losses` that validates its arguments at construction):

- the class and the per-sample function, the names it answers to and its
  family (the registry, ``get``/``serialize``/``deserialize``, the CLI's
  ``--loss`` families);
- the kernel binding: which named entry point of :mod:`losskit.kernels`
  computes it, with which named constants, and for which arguments (the fast
  path never matches class names);
- the plot axis (``losskit plot``);
- the domain of valid inputs, as a recipe that draws them (tests,
  benchmarks).

Adding a loss means its function, its class, one ``LossSpec`` line here and,
optionally, a kernel entry (``CONTRIBUTING.md``).

>>> import losskit
>>> spec = spec_of(losskit.BinaryCrossentropy)
>>> spec.keras_name, spec.family, spec.aliases
('binary_crossentropy', 'probabilistic', ('bce', 'BCE'))
>>> spec.kernel_for({"from_logits": True, "label_smoothing": 0.1, "axis": -1}, ndim=2)
KernelBinding(entry='binary_crossentropy_from_logits', constants=(('label_smoothing', 0.1),))
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from losskit import _config, functional, kernels, losses
from losskit.losses import Loss

__all__ = ["DOMAINS", "SPECS", "KernelBinding", "LossSpec", "spec_of"]

Arguments = Mapping[str, Any]
Inputs = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class KernelBinding:
    """How the fused path computes a loss: a named kernel entry point and the
    values of the named constants it takes (epsilon, delta, label smoothing,
    ...), resolved for one loss object at call time."""

    entry: str
    constants: tuple[tuple[str, float], ...] = ()

    def constant(self, name: str) -> float:
        """The value of constant ``name``."""
        return dict(self.constants)[name]


# A kernel selector: the binding for a loss's constructor arguments and the rank
# of y_pred, or None where the fast path does not apply.
KernelSelector = Callable[[Arguments, int], KernelBinding | None]


@dataclass(frozen=True)
class LossSpec:
    """Everything losskit knows about one built-in loss, besides its maths."""

    cls: type[Loss]
    function: Callable[..., Any]
    family: str
    aliases: tuple[str, ...] = ()
    kernel: KernelSelector | None = None
    plot: str | None = None  # the losskit plot axis ("regression", "hinge", ...)
    domain: str = "real"  # valid inputs: a key of DOMAINS
    logits_domain: str | None = None  # the domain when from_logits=True

    @property
    def keras_name(self) -> str:
        """The class's default ``name`` (Keras's): what results are keyed by."""
        default = inspect.signature(self.cls).parameters["name"].default
        return str(default)

    # ``name`` is what the registry has always called it.
    name = keras_name

    @property
    def parameters(self) -> dict[str, Any]:
        """The loss's own constructor arguments and their defaults, read from the
        class's signature (its ``__init__`` validates them, once; the class's
        calls skip the function forms' per-call checks)."""
        common = ("reduction", "name", "dtype")
        signature = inspect.signature(self.cls).parameters
        return {name: p.default for name, p in signature.items() if name not in common}

    @property
    def function_names(self) -> tuple[str, ...]:
        """Every name that resolves to the function."""
        names = (self.function.__name__, self.keras_name, *self.aliases)
        return tuple(dict.fromkeys(names))

    def kernel_for(self, arguments: Arguments, ndim: int) -> KernelBinding | None:
        """The kernel binding for these constructor arguments and a y_pred of
        rank ``ndim``, or None."""
        return None if self.kernel is None else self.kernel(arguments, ndim)

    def input_domain(self, arguments: Arguments) -> str:
        """The key of :data:`DOMAINS` that draws valid inputs for these arguments."""
        if arguments.get("from_logits") and self.logits_domain is not None:
            return self.logits_domain
        return self.domain


# --- kernel selectors ----------------------------------------------------------


def _last_axis(arguments: Arguments, ndim: int) -> bool:
    axis = arguments.get("axis", -1)
    return axis in (-1, ndim - 1, (-1,), [-1], (ndim - 1,), [ndim - 1])


def _bind(entry: str, *names: str, **fixed: float) -> KernelSelector:
    """Always ``entry``; ``names`` are constants taken from the arguments (or,
    for ``epsilon``, from ``losskit.epsilon()`` at call time)."""

    def select(arguments: Arguments, ndim: int) -> KernelBinding:
        values = [(name, _constant(name, arguments)) for name in names]
        return KernelBinding(entry, (*values, *fixed.items()))

    return select


def _constant(name: str, arguments: Arguments) -> float:
    return _config.epsilon() if name == "epsilon" else float(arguments[name])


def _when(condition: Callable[[Arguments, int], bool], select: KernelSelector) -> KernelSelector:
    def selected(arguments: Arguments, ndim: int) -> KernelBinding | None:
        return select(arguments, ndim) if condition(arguments, ndim) else None

    return selected


def _logits_or_probabilities(
    logits: KernelSelector, probabilities: KernelSelector
) -> KernelSelector:
    def select(arguments: Arguments, ndim: int) -> KernelBinding | None:
        return (logits if arguments.get("from_logits") else probabilities)(arguments, ndim)

    return select


def _whole_array(arguments: Arguments, ndim: int) -> bool:
    return arguments.get("axis") is None


def _sparse_fast(arguments: Arguments, ndim: int) -> bool:
    return _last_axis(arguments, ndim) and arguments.get("ignore_class") is None


def _binary_focal(entry: str, *names: str) -> KernelSelector:
    """Binary focal's binding: ``names`` (epsilon for probabilities), then
    label smoothing, gamma and the class weights: (alpha, 1 - alpha) with class
    balancing, else (1, 1)."""

    def select(arguments: Arguments, ndim: int) -> KernelBinding:
        alpha = float(arguments["alpha"])
        balanced = bool(arguments["apply_class_balancing"])
        weights = (alpha, 1.0 - alpha) if balanced else (1.0, 1.0)
        return KernelBinding(
            entry,
            (
                *((name, _constant(name, arguments)) for name in names),
                ("label_smoothing", float(arguments["label_smoothing"])),
                ("gamma", float(arguments["gamma"])),
                ("weight_one", weights[0]),
                ("weight_zero", weights[1]),
            ),
        )

    return select


def _one_alpha_last_axis(arguments: Arguments, ndim: int) -> bool:
    """The categorical focal kernels take one alpha for all classes."""
    alpha = arguments.get("alpha")
    return _last_axis(arguments, ndim) and isinstance(alpha, numbers.Real)


# --- input domains (tests and benchmarks draw valid inputs from these) -------


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _one_hot(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return np.eye(shape[-1])[rng.integers(0, shape[-1], size=shape[:-1])]


def _labels(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, shape[-1], size=shape[:-1]).astype(float)


def _label_sequences(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """CTC labels for logits of ``shape`` (batch, time, classes): rows of
    ``max(1, time // 2)`` labels in [1, classes), each a random length padded
    with 0 (every row fits in ``time`` steps, repeats included)."""
    batch, time, classes = shape
    width = max(1, time // 2)
    labels = rng.integers(1, max(2, classes), size=(batch, width))
    lengths = rng.integers(1, width + 1, size=(batch, 1))
    return np.where(np.arange(width) < lengths, labels, 0).astype(float)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


DOMAINS: dict[str, Callable[[np.random.Generator, tuple[int, ...]], Inputs]] = {
    "real": lambda rng, s: (rng.normal(size=s) * 2.0, rng.normal(size=s) * 2.0),
    "nonzero_targets": lambda rng, s: (
        rng.uniform(0.5, 3.0, size=s) * rng.choice([-1.0, 1.0], size=s),
        rng.normal(size=s) * 2.0,
    ),
    "above_minus_one": lambda rng, s: (
        rng.uniform(-0.5, 4.0, size=s),
        rng.uniform(-0.5, 4.0, size=s),
    ),
    "signs": lambda rng, s: (rng.choice([-1.0, 1.0], size=s), rng.normal(size=s)),
    "binary_scores": lambda rng, s: (
        rng.integers(0, 2, size=s).astype(float),
        rng.normal(size=s),
    ),
    "one_hot_scores": lambda rng, s: (_one_hot(rng, s), rng.normal(size=s)),
    "distributions": lambda rng, s: (
        _softmax(rng.normal(size=s)),
        _softmax(rng.normal(size=s)),
    ),
    "counts": lambda rng, s: (
        rng.poisson(2.0, size=s).astype(float),
        rng.uniform(0.1, 4.0, size=s),
    ),
    "binary_probabilities": lambda rng, s: (
        rng.integers(0, 2, size=s).astype(float),
        rng.uniform(0.02, 0.98, size=s),
    ),
    "binary_logits": lambda rng, s: (
        rng.uniform(0.0, 1.0, size=s),
        rng.normal(size=s) * 3.0,
    ),
    "categorical_probabilities": lambda rng, s: (
        _one_hot(rng, s),
        rng.uniform(0.05, 1.0, size=s),
    ),
    "categorical_logits": lambda rng, s: (_one_hot(rng, s), rng.normal(size=s) * 3.0),
    "sparse_probabilities": lambda rng, s: (_labels(rng, s), rng.uniform(0.05, 1.0, size=s)),
    "sparse_logits": lambda rng, s: (_labels(rng, s), rng.normal(size=s) * 3.0),
    "masks": lambda rng, s: (
        rng.integers(0, 2, size=s).astype(float),
        rng.uniform(0.0, 1.0, size=s),
    ),
    "label_sequences": lambda rng, s: (_label_sequences(rng, s), rng.normal(size=s) * 2.0),
    "labelled_embeddings": lambda rng, s: (
        rng.integers(0, max(2, s[0] // 3), size=s[:-1]).astype(float),
        _unit_rows(rng.normal(size=s)),
    ),
}
"""Recipes for valid inputs: ``DOMAINS[name](rng, shape)`` gives float64
``(y_true, y_pred)`` of ``shape`` (sparse labels and embeddings' labels:
``shape[:-1]``; CTC label sequences: ``(batch, time // 2)`` for logits of
``(batch, time, classes)``)."""


# --- the table -----------------------------------------------------------------

SPECS: tuple[LossSpec, ...] = (
    LossSpec(
        losses.MeanSquaredError,
        functional.mean_squared_error,
        "regression",
        ("mse", "MSE"),
        kernel=_bind("squared_error"),
        plot="regression",
    ),
    LossSpec(
        losses.MeanAbsoluteError,
        functional.mean_absolute_error,
        "regression",
        ("mae", "MAE"),
        kernel=_bind("absolute_error"),
        plot="regression",
    ),
    LossSpec(
        losses.MeanAbsolutePercentageError,
        functional.mean_absolute_percentage_error,
        "regression",
        ("mape", "MAPE"),
        kernel=_bind("absolute_percentage_error", "epsilon"),
        plot="regression",
        domain="nonzero_targets",
    ),
    LossSpec(
        losses.MeanSquaredLogarithmicError,
        functional.mean_squared_logarithmic_error,
        "regression",
        ("msle", "MSLE"),
        kernel=_bind("squared_logarithmic_error", "epsilon"),
        plot="regression",
        domain="above_minus_one",
    ),
    LossSpec(
        losses.CosineSimilarity,
        functional.cosine_similarity,
        "regression",
        ("cosine_proximity",),
        kernel=_when(_last_axis, _bind("cosine_similarity", "epsilon")),
        plot="regression",
    ),
    LossSpec(
        losses.Huber,
        functional.huber,
        "regression",
        kernel=_bind("huber", "delta"),
        plot="regression",
    ),
    LossSpec(
        losses.LogCosh,
        functional.log_cosh,
        "regression",
        ("logcosh",),
        kernel=_bind("log_cosh"),
        plot="regression",
    ),
    LossSpec(
        losses.Dice,
        functional.dice,
        "segmentation",
        kernel=_when(_whole_array, _bind("dice")),
        domain="masks",
    ),
    LossSpec(
        losses.Tversky,
        functional.tversky,
        "segmentation",
        kernel=_when(_whole_array, _bind("tversky", "alpha", "beta")),
        domain="masks",
    ),
    LossSpec(
        losses.Hinge,
        functional.hinge,
        "hinge",
        kernel=_bind("hinge", squared=0.0),
        plot="hinge",
        domain="signs",
    ),
    LossSpec(
        losses.SquaredHinge,
        functional.squared_hinge,
        "hinge",
        kernel=_bind("hinge", squared=1.0),
        plot="hinge",
        domain="signs",
    ),
    LossSpec(
        losses.CategoricalHinge,
        functional.categorical_hinge,
        "hinge",
        kernel=_bind("categorical_hinge"),
        domain="one_hot_scores",
    ),
    LossSpec(
        losses.KLDivergence,
        functional.kl_divergence,
        "probabilistic",
        ("kld", "KLD", "kullback_leibler_divergence"),
        kernel=_when(_last_axis, _bind("kl_divergence", "epsilon")),
        domain="distributions",
    ),
    LossSpec(
        losses.Poisson,
        functional.poisson,
        "probabilistic",
        kernel=_bind("poisson", "epsilon"),
        plot="probabilistic",
        domain="counts",
    ),
    LossSpec(
        losses.BinaryCrossentropy,
        functional.binary_crossentropy,
        "probabilistic",
        ("bce", "BCE"),
        kernel=_when(
            _last_axis,
            _logits_or_probabilities(
                _bind("binary_crossentropy_from_logits", "label_smoothing"),
                _bind("binary_crossentropy", "epsilon", "label_smoothing"),
            ),
        ),
        plot="probabilistic",
        domain="binary_probabilities",
        logits_domain="binary_logits",
    ),
    LossSpec(
        losses.CategoricalCrossentropy,
        functional.categorical_crossentropy,
        "probabilistic",
        kernel=_when(
            _last_axis,
            _logits_or_probabilities(
                _bind("categorical_crossentropy_from_logits", "label_smoothing"),
                _bind("categorical_crossentropy", "epsilon", "label_smoothing"),
            ),
        ),
        domain="categorical_probabilities",
        logits_domain="categorical_logits",
    ),
    LossSpec(
        losses.SparseCategoricalCrossentropy,
        functional.sparse_categorical_crossentropy,
        "probabilistic",
        kernel=_when(
            _sparse_fast,
            _logits_or_probabilities(
                _bind("sparse_categorical_crossentropy_from_logits"),
                _bind("sparse_categorical_crossentropy", "epsilon"),
            ),
        ),
        domain="sparse_probabilities",
        logits_domain="sparse_logits",
    ),
    LossSpec(
        losses.BinaryFocalCrossentropy,
        functional.binary_focal_crossentropy,
        "probabilistic",
        kernel=_when(
            _last_axis,
            _logits_or_probabilities(
                _binary_focal("binary_focal_crossentropy_from_logits"),
                _binary_focal("binary_focal_crossentropy", "epsilon"),
            ),
        ),
        plot="probabilistic",
        domain="binary_probabilities",
        logits_domain="binary_logits",
    ),
    LossSpec(
        losses.CategoricalFocalCrossentropy,
        functional.categorical_focal_crossentropy,
        "probabilistic",
        kernel=_when(
            _one_alpha_last_axis,
            _logits_or_probabilities(
                _bind(
                    "categorical_focal_crossentropy_from_logits",
                    "epsilon",
                    "label_smoothing",
                    "gamma",
                    "alpha",
                ),
                _bind(
                    "categorical_focal_crossentropy", "epsilon", "label_smoothing", "gamma", "alpha"
                ),
            ),
        ),
        domain="categorical_probabilities",
        logits_domain="categorical_logits",
    ),
    LossSpec(
        losses.CategoricalGeneralizedCrossEntropy,
        functional.categorical_generalized_cross_entropy,
        "probabilistic",
        kernel=_bind("categorical_generalized_cross_entropy", "q"),
        domain="sparse_probabilities",
    ),
    LossSpec(losses.CTC, functional.ctc, "sequence", domain="label_sequences"),
    LossSpec(losses.Circle, functional.circle, "metric_learning", domain="labelled_embeddings"),
)

_BY_CLASS: dict[type, LossSpec] = {spec.cls: spec for spec in SPECS}
for _spec in SPECS:
    if _spec.kernel is not None:
        kernels.bind(_spec.cls, _spec.kernel)


def spec_of(cls: type) -> LossSpec | None:
    """The spec of a built-in loss class (exactly that class, not a subclass,
    whose ``call`` may compute something else), or None."""
    return _BY_CLASS.get(cls)
