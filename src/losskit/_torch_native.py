"""Built-in losses on torch tensors, lowered to fewer torch operations.

A training step calls its loss once on a small batch, where each dispatched
operation costs more than its arithmetic (and on a GPU, each is a kernel
launch).  For eligible calls (below) a built-in loss is computed with the
fewest torch operations that give the array-API reference's values to float
rounding, the same inf/NaN pattern and the same gradients: torch's fused
losses where their semantics are the reference's (``mse_loss``, ``l1_loss``,
``huber_loss``, ``poisson_nll_loss``, ``cross_entropy`` from logits), and
elsewhere the reference's own formula in the same torch operations, without
its per-call conversions and with one mean over all elements instead of a
mean per row, a sum and a division.  The reference (:mod:`losskit.functional`)
stays the definition; ``tests/test_torch_native.py`` checks every lowering
against it on random and edge values, ``tests/test_op_counts.py`` counts
their operations.

Eligible: ``y_pred`` a dense ``torch.Tensor`` (or ``Parameter``) of rank >= 2
and the loss's dtype (float32 or float64), ``y_true`` a tensor of the same
shape, dtype and device (integer or float labels of shape
``y_pred.shape[:-1]`` for the sparse crossentropy), no mask, weights None or
a tensor of the per-sample losses' shape (or that shape plus a trailing 1,
or 0-d), not inside ``torch.compile`` (which fuses the reference itself),
and the backend preference ``"fast"``.  Anything else returns None and the
reference runs, so its checks, warnings and error messages apply unchanged.

Not lowered, and why:

- Dice and Tversky (one loss from three global sums): the reference already
  dispatches no more operations than the formula written by hand;
- ``SparseCategoricalCrossentropy(ignore_class=...)``: torch's mean over the
  kept entries is NaN where Keras's is 0;
- crossentropies over an axis other than the last, of rank > 2, or with one
  class (where the reference warns); cosine similarity over several axes;
- torch's fused losses whose semantics differ, used nowhere here:
  ``binary_cross_entropy`` (no clip to ``[eps, 1 - eps]``, and it raises on
  NaN), ``binary_cross_entropy_with_logits`` (NaN for a logit of -inf with a
  label above 0, where the reference's loss is +inf), ``kl_div`` and
  ``cosine_similarity`` (they clamp differently); ``clamp`` for Keras's clips
  (its gradient at a bound is 1 where ``minimum(maximum(x, lo), hi)`` gives
  1/2, as Keras on JAX does).

One difference is left, on inputs that are not labels: integer labels
beyond the int32 range, which the reference wraps around to int32 (so
``2**32 + 1`` is class 1), have a loss of 0 here, as every other label
outside ``[0, classes)`` has.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any

from losskit import _array, _config, kernels
from losskit.functional.regression import delta_within

__all__ = ["native_call"]

Tensor = Any
# (loss, y_true, y_pred, reduction) -> the loss, where reduction is torch's
# code: 1 the mean of the per-sample losses, 2 their sum, 0 none.
Lowering = Callable[[Any, Tensor, Tensor, int], Tensor]

_KERAS_TO_TORCH = {  # torch's reduction codes: 0 none, 1 mean, 2 sum
    "sum_over_batch_size": 1,
    "mean": 1,
    "mean_with_sample_weight": 1,  # without weights, Keras divides by the count
    "sum": 2,
    "none": 0,
    None: 0,
}


class _Lowering:
    """How one loss class is lowered: ``applies(arguments, y_pred)`` says
    whether its arguments and input allow it, ``compute(loss, t, p,
    reduction)`` computes it; ``labels``: ``y_true`` holds integer labels."""

    __slots__ = ("applies", "compute", "labels", "native_below")

    def __init__(
        self,
        compute: Lowering,
        applies: Callable[[dict[str, Any], Tensor], bool] | None = None,
        labels: bool = False,
        native_below: Callable[[dict[str, Any]], int] | None = None,
    ) -> None:
        self.compute = compute
        self.applies = applies
        self.labels = labels
        # The element count below which torch's own fused loss (one ATen
        # operation and its backward) beats the Numba kernels on the CPU, by
        # the loss's arguments; None: the kernels always go first.
        self.native_below = native_below


_LOWERINGS: dict[type, _Lowering] = {}
_FACTS: dict[str, Any] = {}  # torch's types and dtypes, read once torch is imported


def native_call(loss: Any, y_true: Any, y_pred: Any, sample_weight: Any, mask: Any) -> Any:
    """The loss computed with torch's fused operations, or None where the
    call is not eligible (see the module docstring)."""
    torch = sys.modules.get("torch")
    if torch is None or mask is not None or torch.compiler.is_compiling():
        return None
    facts = _FACTS or _read_facts(torch)
    tensor_types = facts["types"]
    if type(y_pred) not in tensor_types or type(y_true) not in tensor_types:
        return None
    found = (_LOWERINGS or _register()).get(type(loss))
    if found is None or facts["names"].get(y_pred.dtype) != loss._dtype or y_pred.ndim < 2:
        return None
    if found.applies is not None and not found.applies(loss._fn_kwargs, y_pred):
        return None
    if found.labels:
        if not _labels_fit(y_true, y_pred, facts["labels"]):
            return None
    elif not _pair_fits(y_true, y_pred):
        return None
    if _config.backend_preference() != "fast":
        return None
    if sample_weight is None:
        return found.compute(loss, y_true, y_pred, _KERAS_TO_TORCH[loss.reduction])
    weight = _weight(sample_weight, y_pred, tensor_types)
    if weight is None:
        return None
    return _weighted(torch, found.compute(loss, y_true, y_pred, 0), weight, loss.reduction)


# Where torch's single fused loss (forward and backward, one torch thread)
# stops beating the Numba kernel (every core) at 100 features or classes,
# measured by ``benchmarks/training_loop.py --crossover`` on the 2-core
# machine: MSE and Huber between 2048 and 4096 rows (kernel 1.03-1.06x
# torch's time, then 0.80-0.83x), the sparse crossentropy from logits
# between 4096 and 8192 rows (1.04x, then 0.84x).
_ELEMENTWISE_CROSSOVER = 1 << 18
_CROSSENTROPY_CROSSOVER = 1 << 19


def takes_first(loss: Any, y_pred: Any) -> bool:
    """Whether :func:`native_call` should have this call before the fused
    kernels.  For the Triton kernels (CUDA tensors): a lowered loss below
    :data:`losskit.kernels.TRITON_MIN_ELEMENTS`, where the host's work per
    call sets the pace, but for a call captured into a CUDA graph under
    ``assume_finite()`` (:func:`losskit.kernels.lowering_first_on_gpu`).
    For the Numba kernels: a CPU tensor smaller than the crossover of a loss
    that torch computes in one fused operation (MSE, Huber, the
    crossentropies from logits).  Above these, or for the others,
    the kernels go first."""
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    facts = _FACTS or _read_facts(torch)
    if type(y_pred) not in facts["types"]:
        return False
    found = (_LOWERINGS or _register()).get(type(loss))
    if found is None:
        return False
    if kernels.routes_to_triton(y_pred):
        return kernels.lowering_first_on_gpu(y_pred)
    if found.native_below is None:
        return False
    return bool(
        y_pred.device.type == "cpu" and y_pred.numel() < found.native_below(loss._fn_kwargs)
    )


def _read_facts(torch: Any) -> dict[str, Any]:
    # Built whole, then published in one update: another thread must never
    # see a partly filled _FACTS (it only checks that it is not empty).
    facts = {
        "labels": frozenset(
            (
                torch.int8,
                torch.int16,
                torch.int32,
                torch.int64,
                torch.uint8,
                torch.float32,
                torch.float64,
            )
        ),
        "names": {torch.float32: "float32", torch.float64: "float64"},
        "strided": torch.strided,
        "nn": torch._C._nn,
        "int64": torch.int64,
        "float32": torch.float32,
        "types": (torch.Tensor, torch.nn.Parameter),
    }
    _FACTS.update(facts)
    return _FACTS


def _pair_fits(y_true: Tensor, y_pred: Tensor) -> bool:
    return bool(
        y_true.shape == y_pred.shape
        and y_true.dtype == y_pred.dtype
        and y_pred.numel() > 0
        and y_true.device == y_pred.device
        and y_pred.layout == y_true.layout == _FACTS["strided"]
    )


def _labels_fit(y_true: Tensor, y_pred: Tensor, label_types: frozenset[Any]) -> bool:
    return bool(
        y_pred.ndim == 2
        and y_true.shape == y_pred.shape[:-1]
        and y_true.dtype in label_types
        and y_pred.numel() > 0
        and y_true.device == y_pred.device
        and y_pred.layout == y_true.layout == _FACTS["strided"]
    )


def _weight(sample_weight: Any, y_pred: Tensor, tensor_types: tuple[type, ...]) -> Tensor | None:
    """The weights as a tensor of the per-sample losses' shape (or 0-d, or
    one per row as a column) and ``y_pred``'s dtype, or None where the
    reference should decide."""
    if type(sample_weight) not in tensor_types or sample_weight.device != y_pred.device:
        return None
    if sample_weight.dtype.is_complex or sample_weight.layout != _FACTS["strided"]:
        return None
    shape = y_pred.shape[:-1]
    if sample_weight.shape == (*shape, 1):
        if len(shape) > 1:  # Keras's rank alignment squeezes them (rank 1: see _weighted)
            sample_weight = sample_weight.reshape(shape)
    elif sample_weight.ndim != 0 and sample_weight.shape != shape:
        return None
    if sample_weight.dtype != y_pred.dtype:
        sample_weight = sample_weight.to(y_pred.dtype)
    return sample_weight


def _weighted(torch: Any, values: Tensor, weight: Tensor, reduction: str | None) -> Tensor:
    """Keras's reduction of weighted per-sample losses (see
    :mod:`losskit.reduction`): divisions are divide-no-nan."""
    if weight.ndim > values.ndim:  # a column of weights expands rank-1 losses
        values = values.unsqueeze(-1)
    weighted = values * weight
    if reduction is None or reduction == "none":
        return weighted
    if reduction == "sum":
        return weighted.sum()
    if reduction != "mean_with_sample_weight":
        return weighted.mean()
    total = weighted.sum()
    divisor = weight.sum() if weight.ndim else weight
    zero = divisor == 0
    return torch.where(zero, 0.0, total / torch.where(zero, 1.0, divisor))


# --- the lowerings ---------------------------------------------------------------
# They call the ATen operations that torch.nn.functional's wrappers end in
# (torch._C._nn.mse_loss, ...): the wrappers' own checks and broadcasting
# cost more than the operation on a small batch, and the eligibility checks
# above already ensure what they check.

_NONE, _MEAN, _SUM = 0, 1, 2  # torch's reduction codes


def _elementwise(function: Callable[..., Tensor], p: Tensor, t: Tensor, reduction: int) -> Tensor:
    """A loss averaged over the last axis, from torch's elementwise loss
    ``function(p, t, reduction)``: the mean of the row means is the mean of
    all elements, their sum the sum of all elements over the row length."""
    if reduction == _MEAN:
        return function(p, t, _MEAN)
    if reduction == _SUM:
        return function(p, t, _SUM) / p.shape[-1]
    return function(p, t, _NONE).mean(-1)


def _mean_squared_error(loss: Any, t: Tensor, p: Tensor, reduction: int) -> Tensor:
    return _elementwise(_FACTS["nn"].mse_loss, p, t, reduction)


def _mean_absolute_error(loss: Any, t: Tensor, p: Tensor, reduction: int) -> Tensor:
    return _elementwise(_FACTS["nn"].l1_loss, p, t, reduction)


def _without_forward_mode(arguments: dict[str, Any], y_pred: Tensor) -> bool:
    """Whether no forward-mode derivative can be asked of the call: torch's
    ``huber_loss`` has none for its backward, and ``mse_loss``'s (mean)
    raises "ZeroTensors are immutable", so a Hessian-vector product by
    ``torch.func.jvp`` over ``grad`` (or forward-mode Jacobians) failed in
    PyTorch; under function transforms and dual levels the reference goes."""
    torch = sys.modules["torch"]
    forward_ad = sys.modules.get("torch.autograd.forward_ad")
    dual_level = -1 if forward_ad is None else forward_ad._current_level
    return not torch._C._are_functorch_transforms_active() and dual_level < 0


def _huber_applies(arguments: dict[str, Any], y_pred: Tensor) -> bool:
    """No forward-mode derivative asked (:func:`_without_forward_mode`), and
    ``delta`` at most the square root of the dtype's largest value: torch's
    ``huber_loss`` computes ``(0.5 q) q``, finite where the reference's
    ``q * q`` overflows (a float32 error of 2e19 with delta 1e30: 2e38 there,
    inf in the reference and in Keras)."""
    largest = _array.largest_finite(sys.modules["torch"], y_pred.dtype)
    return float(arguments["delta"]) <= math.sqrt(largest) and _without_forward_mode(
        arguments, y_pred
    )


def _huber(loss: Any, t: Tensor, p: Tensor, reduction: int) -> Tensor:
    huber_loss = _FACTS["nn"].huber_loss
    # within the dtype's range, as the reference holds it (an inf error with a
    # larger delta was NaN here, inf there)
    delta = delta_within(loss._fn_kwargs["delta"], sys.modules["torch"], p.dtype)
    return _elementwise(lambda p, t, r: huber_loss(p, t, r, delta), p, t, reduction)


def _poisson(loss: Any, t: Tensor, p: Tensor, reduction: int) -> Tensor:
    poisson_nll_loss, eps = sys.modules["torch"].poisson_nll_loss, _config.epsilon()
    # log_input=False, full=False: p - t log(p + eps), Keras's formula
    return _elementwise(
        lambda p, t, r: poisson_nll_loss(p, t, False, False, eps, r), p, t, reduction
    )


def _averaged(elementwise: Tensor, reduction: int) -> Tensor:
    """Reduce a loss that is averaged over the last axis from its terms."""
    if reduction == _MEAN:
        return elementwise.mean()
    if reduction == _SUM:
        return elementwise.sum() / elementwise.shape[-1]
    return elementwise.mean(-1)


def _reduced(values: Tensor, reduction: int) -> Tensor:
    """Reduce per-sample losses."""
    if reduction == _MEAN:
        return values.mean()
    return values.sum() if reduction == _SUM else values


_CONSTANTS: dict[tuple[float, Any, Any], Tensor] = {}


def _constant(value: float, like: Tensor) -> Tensor:
    """A cached 0-d tensor of ``like``'s dtype and device: the reference's
    ``maximum(x, eps)`` (whose gradient at a tie is 1/2, unlike ``clamp``'s)
    without building the constant on every call."""
    key = (value, like.dtype, like.device)
    constant = _CONSTANTS.get(key)
    if constant is None:
        torch = sys.modules["torch"]
        with torch.inference_mode(False):  # usable in autograd later
            constant = torch.tensor(value, dtype=like.dtype, device=like.device)
        _CONSTANTS[key] = constant
    return constant


def _clip(x: Tensor, low: float, high: float) -> Tensor:
    torch = sys.modules["torch"]
    return torch.minimum(torch.maximum(x, _constant(low, x)), _constant(high, x))


def _mean_absolute_percentage_error(loss: Any, t: Tensor, p: Tensor, reduction: int) -> Tensor:
    scale = sys.modules["torch"].maximum(t.abs(), _constant(_config.epsilon(), t))
    return 100.0 * _averaged(((t - p) / scale).abs(), reduction)


def _mean_squared_logarithmic_error(loss: Any, t: Tensor, p: Tensor, reduction: int) -> Tensor:
    torch, eps = sys.modules["torch"], _config.epsilon()
    log_pred = torch.log(torch.maximum(p, _constant(eps, p)) + 1.0)
    log_true = torch.log(torch.maximum(t, _constant(eps, t)) + 1.0)
    return _averaged((log_pred - log_true).square(), reduction)


def _softplus(x: Tensor) -> Tensor:
    """The reference's ``logaddexp(x, 0)`` as torch's softplus, which returns
    ``x`` itself above a threshold: there ``log1p(exp(-x))`` is below half
    an ulp of ``x`` (20 in float32, 40 in float64), and the gradient, 1 above
    it, is ``sigmoid(x)`` below it, as logaddexp's; one operation each way
    where logaddexp's backward takes four."""
    threshold = 20.0 if x.dtype == _FACTS["float32"] else 40.0
    return _FACTS["nn"].softplus(x, 1.0, threshold)


def _log_cosh(loss: Any, t: Tensor, p: Tensor, reduction: int) -> Tensor:
    error = p - t
    return _averaged(error + _softplus(-2.0 * error) - math.log(2.0), reduction)


def _hinge_margin(t: Tensor, p: Tensor) -> Tensor:
    torch = sys.modules["torch"]
    signs = torch.where(((t == 0) | (t == 1)).all(), 2.0 * t - 1.0, t)
    return torch.maximum(1.0 - signs * p, _constant(0.0, p))


def _hinge(loss: Any, t: Tensor, p: Tensor, reduction: int) -> Tensor:
    return _averaged(_hinge_margin(t, p), reduction)


def _squared_hinge(loss: Any, t: Tensor, p: Tensor, reduction: int) -> Tensor:
    return _averaged(_hinge_margin(t, p).square(), reduction)


def _categorical_hinge(loss: Any, t: Tensor, p: Tensor, reduction: int) -> Tensor:
    torch = sys.modules["torch"]
    positive = (t * p).sum(-1)
    negative = ((1.0 - t) * p).amax(-1)
    return _reduced(torch.maximum(negative - positive + 1.0, _constant(0.0, p)), reduction)


def _cosine_similarity(loss: Any, t: Tensor, p: Tensor, reduction: int) -> Tensor:
    torch, eps = sys.modules["torch"], _config.epsilon()

    def normalized(x: Tensor) -> Tensor:
        square_sum = x.square().sum(-1, keepdim=True)
        return x / torch.sqrt(torch.maximum(square_sum, _constant(eps * eps, x)))

    return _reduced(-(normalized(t) * normalized(p)).sum(-1), reduction)


def _kl_divergence(loss: Any, t: Tensor, p: Tensor, reduction: int) -> Tensor:
    eps = _config.epsilon()
    t, p = _clip(t, eps, 1.0), _clip(p, eps, 1.0)
    return _reduced((t * (t.log() - p.log())).sum(-1), reduction)


def _binary_crossentropy(loss: Any, t: Tensor, p: Tensor, reduction: int) -> Tensor:
    arguments = loss._fn_kwargs
    smoothing = arguments["label_smoothing"]
    if smoothing:
        t = t * (1.0 - smoothing) + 0.5 * smoothing
    if arguments["from_logits"]:
        terms = t * _softplus(-p) + (1.0 - t) * _softplus(p)
    else:
        eps = _config.epsilon()
        clipped = _clip(p, eps, 1.0 - eps)
        terms = -(t * clipped.log() + (1.0 - t) * (1.0 - clipped).log())
    return _averaged(terms, reduction)


def _log_probabilities(p: Tensor) -> Tensor:
    eps = _config.epsilon()
    return _clip(p / p.sum(-1, keepdim=True), eps, 1.0 - eps).log()


def _categorical_crossentropy(loss: Any, t: Tensor, p: Tensor, reduction: int) -> Tensor:
    smoothing = float(loss._fn_kwargs["label_smoothing"])
    if loss._fn_kwargs["from_logits"]:
        # torch smooths probability targets as Keras does: t (1 - s) + s / classes
        return _FACTS["nn"].cross_entropy_loss(p, t, None, reduction, -100, smoothing)
    if smoothing:
        t = t * (1.0 - smoothing) + smoothing / p.shape[-1]
    return _reduced(-(t * _log_probabilities(p)).sum(-1), reduction)


def _sparse_categorical_crossentropy(loss: Any, t: Tensor, p: Tensor, reduction: int) -> Tensor:
    # Labels outside [0, classes) have a loss of 0 (Keras on JAX) where torch
    # would fail: clamped to [-1, classes] and taken modulo classes + 1, they
    # all become `classes`, torch's ignored index here, whose loss is 0 too.
    # (Float labels are truncated first, as the reference's cast truncates.)
    classes = p.shape[-1]
    labels = t if t.dtype == _FACTS["int64"] else t.long()
    labels = labels.clamp(-1, classes).remainder_(classes + 1)
    nn = _FACTS["nn"]
    if loss._fn_kwargs["from_logits"]:
        loss_of = lambda r: nn.cross_entropy_loss(p, labels, None, r, classes, 0.0)  # noqa: E731
    else:
        log_probabilities = _log_probabilities(p)
        loss_of = lambda r: nn.nll_loss(log_probabilities, labels, None, r, classes)  # noqa: E731
    if reduction == _MEAN:  # Keras divides by every entry, torch by the kept ones
        return loss_of(_SUM) / p.shape[0]
    return loss_of(reduction)


def _last_axis(arguments: dict[str, Any], y_pred: Tensor) -> bool:
    return arguments["axis"] in (-1, y_pred.ndim - 1)


def _classes(arguments: dict[str, Any], y_pred: Tensor) -> bool:
    # rank 2 (torch's class axis is 1); one class: the reference warns
    return bool(arguments["axis"] in (-1, 1) and y_pred.ndim == 2 and y_pred.shape[1] > 1)


def _sparse_classes(arguments: dict[str, Any], y_pred: Tensor) -> bool:
    return _classes(arguments, y_pred) and arguments["ignore_class"] is None


def _elementwise_crossover(arguments: dict[str, Any]) -> int:
    return _ELEMENTWISE_CROSSOVER


def _crossentropy_crossover(arguments: dict[str, Any]) -> int:
    return _CROSSENTROPY_CROSSOVER if arguments["from_logits"] else 0


def _register() -> dict[type, _Lowering]:
    from losskit import losses

    _LOWERINGS.update(
        {
            losses.MeanSquaredError: _Lowering(
                _mean_squared_error, _without_forward_mode, native_below=_elementwise_crossover
            ),
            losses.MeanAbsoluteError: _Lowering(_mean_absolute_error),
            losses.Huber: _Lowering(_huber, _huber_applies, native_below=_elementwise_crossover),
            losses.Poisson: _Lowering(_poisson),
            losses.MeanAbsolutePercentageError: _Lowering(_mean_absolute_percentage_error),
            losses.MeanSquaredLogarithmicError: _Lowering(_mean_squared_logarithmic_error),
            losses.LogCosh: _Lowering(_log_cosh),
            losses.Hinge: _Lowering(_hinge),
            losses.SquaredHinge: _Lowering(_squared_hinge),
            losses.CategoricalHinge: _Lowering(_categorical_hinge),
            losses.CosineSimilarity: _Lowering(_cosine_similarity, _last_axis),
            losses.KLDivergence: _Lowering(_kl_divergence),
            losses.BinaryCrossentropy: _Lowering(_binary_crossentropy, _last_axis),
            losses.CategoricalCrossentropy: _Lowering(
                _categorical_crossentropy, _classes, native_below=_crossentropy_crossover
            ),
            losses.SparseCategoricalCrossentropy: _Lowering(
                _sparse_categorical_crossentropy,
                _sparse_classes,
                labels=True,
                native_below=_crossentropy_crossover,
            ),
        }
    )
    return _LOWERINGS
