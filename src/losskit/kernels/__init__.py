"""Fused fast paths, dispatched by each loss's spec and the input's library,
device, dtype and layout.

A built-in loss class first offers its call to :func:`fused_call`.  Its spec
(:mod:`losskit.spec`) names a kernel entry point and the constants it takes
(:func:`entries`); nothing here matches class names.  Where the input allows
it (NumPy arrays or plain PyTorch CPU tensors, C-contiguous float32 or float64
of the class's dtype, weights that are None, a scalar or one per sample, no
mask, a reducing reduction, at least :data:`MIN_ELEMENTS` elements, and Numba
installed) one compiled pass computes the reduced loss, and with a torch
``y_pred`` that requires grad, its gradient too (so ``backward()`` costs
nothing more).  The kernels are Numba loops (:mod:`._numba_elementwise`,
:mod:`._numba_rowwise`) that LLVM vectorises; exp and log come from
:mod:`._vmath`, branch-free versions that vectorise too (Numba's own are
scalar C-library calls), computed in the input's precision.

Otherwise, and wherever inf or NaN shows up (each kernel's total carries a
guard that turns NaN for a non-finite input or derivative), it returns None
and the reference implementation runs, which defines the inf/NaN pattern.
Results equal the reference's up to float rounding (sums are accumulated in
float64): ``tests/test_fast_path_fuzz.py`` checks values and gradients on
edge data, ``tests/test_kernels.py`` on random valid inputs.

``losskit.set_backend_preference("reference")`` (or ``LOSSKIT_BACKEND=reference``)
turns fast paths off; :func:`declined` turns only these kernels off, in one
thread, for a caller whose work is too small to repay loading Numba.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib.util
import math
import numbers
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from losskit import _array, _config
from losskit.functional import segmentation
from losskit.functional.regression import delta_within

__all__ = [
    "MIN_ELEMENTS",
    "TRITON_MIN_ELEMENTS",
    "available",
    "declined",
    "fused_call",
    "regression_sums",
]

MIN_ELEMENTS = 1 << 15
"""Smaller inputs take the reference path (a kernel launch would not pay)."""
TRITON_MIN_ELEMENTS = 1 << 24
"""Smaller CUDA tensors take torch's own operations (the lowering in
``losskit._torch_native``, where it takes the call) before the Triton
kernels.  A fused call costs the host about five times what the lowering
does (Triton's launcher, the partial sums and their divisor, the finiteness
read-back), so below some size the host, not the GPU, sets the pace.  On an
H100 whose host ran torch's own MSE forward+backward in 0.17-0.35 ms, calls
issued back to back took 0.8-1.3 ms through the kernels at every size up to
2^26 elements, against 0.15-0.35 ms (MSE, crossentropy) through the lowering
up to 2^24; at 2^24 the two were even for binary crossentropy and cosine
similarity; at 2^28 a checked call through the kernels took 2.2-2.5 ms
against torch's own 3.0-14.5 ms (``benchmarks/gpu_host.py`` and
``benchmarks/gpu.py``; results in
``benchmarks/results/gpu_host_NVIDIA-H100-80GB-HBM3.txt``)."""

_NUMBA = importlib.util.find_spec("numba") is not None
_ONE = np.ones(1)
# Numba's default threading layer aborts the process when two Python threads
# run parallel kernels at once; calls from several threads take turns instead.
_KERNEL_LOCK = threading.RLock()
# Set inside declined(): per thread (and asyncio task), like prefer_backend.
_DECLINED: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "losskit_kernels_declined", default=False
)


def release_gradient_buffers() -> None:
    """Drop the gradient buffers kept for reuse by the torch fast path (see
    :mod:`losskit.kernels._torch`); their memory is freed once no tensor uses it."""
    if "losskit.kernels._torch" in sys.modules:
        sys.modules["losskit.kernels._torch"].release_gradient_buffers()


def available() -> bool:
    """Whether fused kernels can run here (Numba is installed)."""
    return _NUMBA


def declined_here() -> bool:
    """Whether this thread is inside :func:`declined`."""
    return _DECLINED.get()


@contextlib.contextmanager
def declined() -> Iterator[None]:
    """Inside the block, in this thread (or asyncio task) only, the Numba
    kernels decline every call, so Numba is neither imported nor loaded: the
    calls take the NumPy fast path or the reference, with the same results up
    to float rounding (and the streaming accumulators' per-group additions
    their NumPy version, bit for bit the same).  For a caller that knows its whole work is too small
    to repay Numba's start-up (importing it and loading the first cached
    kernel take about 0.5 s in a fresh process, as long as NumPy needs for
    10^8 squared errors).

    >>> import numpy as np
    >>> import losskit
    >>> from losskit import kernels
    >>> x = np.zeros((1 << 16, 1))
    >>> with kernels.declined():
    ...     float(losskit.losses.MeanSquaredError()(x, x + 1))
    1.0
    """
    token = _DECLINED.set(True)
    try:
        yield
    finally:
        _DECLINED.reset(token)


@dataclass(frozen=True)
class Entry:
    """A named pair of fused kernels.

    ``forward(t, p, w, w_step, a, b)`` returns ``sum_i w_i loss_i`` and
    ``forward_backward(..., scale, grad)`` also writes ``scale`` times its
    gradient into ``grad``; ``constants`` names what the ``a`` and ``b`` slots
    hold (None: unused), and a spec's :class:`~losskit.spec.KernelBinding`
    supplies them by those names.
    """

    forward: Callable[..., Any]
    forward_backward: Callable[..., Any]
    constants: tuple[str | None, ...] = ()
    # "elementwise": a term per element (rows may be regrouped); "rows": a term
    # per row; "labels": a row and its integer label; "checked_hinge": hinge
    # with Keras's label conversion decided in the pass; "overlap": the three
    # global sums of Dice and Tversky (a 0-d loss)
    layout: str = "elementwise"
    averaged: bool = True  # the term is averaged (not summed) over a row

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name in self.constants if name is not None)


@functools.cache
def entries() -> dict[str, Entry]:
    """Every kernel entry point, by the name a spec's binding uses."""
    from losskit.kernels import _numba_elementwise as e
    from losskit.kernels import _numba_rowwise as r

    eps, smoothing = "epsilon", "label_smoothing"
    return {
        "squared_error": Entry(e.squared_error_forward, e.squared_error_forward_backward),
        "absolute_error": Entry(e.absolute_error_forward, e.absolute_error_forward_backward),
        "absolute_percentage_error": Entry(
            e.absolute_percentage_error_forward,
            e.absolute_percentage_error_forward_backward,
            (eps,),
        ),
        "squared_logarithmic_error": Entry(
            e.squared_logarithmic_error_forward,
            e.squared_logarithmic_error_forward_backward,
            (eps,),
        ),
        "huber": Entry(e.huber_forward, e.huber_forward_backward, ("delta",)),
        "log_cosh": Entry(e.log_cosh_forward, e.log_cosh_forward_backward),
        "poisson": Entry(e.poisson_forward, e.poisson_forward_backward, (eps,)),
        "kl_divergence": Entry(
            e.kl_divergence_forward, e.kl_divergence_forward_backward, (eps,), averaged=False
        ),
        "binary_crossentropy": Entry(
            e.binary_crossentropy_forward,
            e.binary_crossentropy_forward_backward,
            (eps, smoothing),
        ),
        "binary_crossentropy_from_logits": Entry(
            e.binary_crossentropy_from_logits_forward,
            e.binary_crossentropy_from_logits_forward_backward,
            (None, smoothing),
        ),
        "hinge": Entry(
            e.hinge_checked_forward,
            e.hinge_checked_forward_backward,
            (None, "squared"),
            layout="checked_hinge",
        ),
        "cosine_similarity": Entry(
            r.cosine_forward, r.cosine_forward_backward, (eps,), layout="rows"
        ),
        "categorical_hinge": Entry(
            r.categorical_hinge_forward, r.categorical_hinge_forward_backward, layout="rows"
        ),
        "categorical_crossentropy": Entry(
            r.categorical_forward, r.categorical_forward_backward, (eps, smoothing), layout="rows"
        ),
        "categorical_crossentropy_from_logits": Entry(
            r.categorical_logits_forward,
            r.categorical_logits_forward_backward,
            (None, smoothing),
            layout="rows",
        ),
        "sparse_categorical_crossentropy": Entry(
            r.sparse_forward, r.sparse_forward_backward, (eps,), layout="labels"
        ),
        "sparse_categorical_crossentropy_from_logits": Entry(
            r.sparse_logits_forward, r.sparse_logits_forward_backward, layout="labels"
        ),
        "dice": Entry(r.overlap_sums, r.affine_in_true, layout="overlap"),
        "tversky": Entry(r.overlap_sums, r.affine_in_true, ("alpha", "beta"), layout="overlap"),
        "binary_focal_crossentropy": Entry(
            e.binary_focal_forward,
            e.binary_focal_forward_backward,
            (eps, smoothing, "gamma", "weight_one", "weight_zero"),
        ),
        "binary_focal_crossentropy_from_logits": Entry(
            e.binary_focal_from_logits_forward,
            e.binary_focal_from_logits_forward_backward,
            (None, smoothing, "gamma", "weight_one", "weight_zero"),
        ),
        "categorical_focal_crossentropy": Entry(
            r.categorical_focal_forward,
            r.categorical_focal_forward_backward,
            (eps, smoothing, "gamma", "alpha"),
            layout="rows",
        ),
        "categorical_focal_crossentropy_from_logits": Entry(
            r.categorical_focal_logits_forward,
            r.categorical_focal_logits_forward_backward,
            (eps, smoothing, "gamma", "alpha"),
            layout="rows",
        ),
        "categorical_generalized_cross_entropy": Entry(
            r.generalized_forward, r.generalized_forward_backward, ("q",), layout="labels"
        ),
    }


@dataclass(frozen=True)
class Plan:
    """A loss object's entry point and the values of its ``a`` and ``b`` slots."""

    entry: Entry
    binding: Any  # losskit.spec.KernelBinding
    a: float = 0.0
    b: float = 0.0
    more: tuple[float, ...] = ()  # slots after a and b (focal's gamma and alpha)

    @property
    def forward(self) -> Callable[..., Any]:
        return self.entry.forward

    @property
    def forward_backward(self) -> Callable[..., Any]:
        return self.entry.forward_backward

    @property
    def labels(self) -> bool:
        return self.entry.layout == "labels"

    @property
    def checked_hinge(self) -> bool:
        return self.entry.layout == "checked_hinge"

    @property
    def overlap(self) -> bool:
        return self.entry.layout == "overlap"

    @property
    def elementwise(self) -> bool:
        return self.entry.layout in ("elementwise", "checked_hinge")

    @property
    def averaged(self) -> bool:
        return self.entry.averaged


# Kernel selectors by loss class, given by losskit.spec when it is imported (so
# this module needs no import of the spec table, which imports the losses).
_SELECTORS: dict[type, Callable[[Any, int], Any]] = {}


def bind(cls: type, selector: Callable[[Any, int], Any]) -> None:
    """Let instances of exactly ``cls`` take the fast path that
    ``selector(arguments, ndim)`` names (a ``KernelBinding``, or None)."""
    _SELECTORS[cls] = selector


def _plan(loss: Any, ndim: int) -> Plan | None:
    """The plan of a built-in loss object (its spec's kernel binding), or None."""
    selector = _SELECTORS.get(type(loss))
    binding = None if selector is None else selector(loss.arguments, ndim)
    if binding is None:
        return None
    entry = entries()[binding.entry]
    values = dict(binding.constants)
    slots = [0.0 if name is None else values[name] for name in entry.constants]
    a, b = [*slots, 0.0, 0.0][:2]
    return Plan(entry, binding, a, b, more=tuple(slots[2:]))


# --- inputs ---------------------------------------------------------------------


def _compiling() -> bool:
    """Under torch.compile, the reference path is traced instead."""
    torch = sys.modules.get("torch")
    return torch is not None and bool(torch.compiler.is_compiling())


# Tensor dtypes whose memory NumPy reads as is (no bfloat16, no complex).
_TORCH_HOST_DTYPES = (
    "float16",
    "float32",
    "float64",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "bool",
)


def _plain_cpu_tensor(x: Any) -> bool:
    """Whether ``x`` is a torch tensor whose memory NumPy can view as it is:
    a dense CPU tensor (not meta, fake or another subclass) of a NumPy dtype,
    without a lazy conjugate or negation bit, and not wrapped by a
    ``torch.func`` transform or carrying a forward-mode tangent."""
    torch = sys.modules.get("torch")
    if torch is None or type(x) not in (torch.Tensor, torch.nn.Parameter):
        return False
    if x.device.type != "cpu" or x.layout != torch.strided:
        return False
    if str(x.dtype)[6:] not in _TORCH_HOST_DTYPES or x.is_conj() or x.is_neg():
        return False
    if torch._C._functorch.is_functorch_wrapped_tensor(x):
        return False
    if torch._C._are_functorch_transforms_active():
        return False  # a plain tensor captured by the transform: .numpy() fails there
    return int(torch.autograd.forward_ad._current_level) < 0


def _host_array(x: Any, allow_grad: bool = False) -> np.ndarray | None:
    """A NumPy view of ``x`` (no copy), or None unless ``x`` is a NumPy array
    (or memmap) in native byte order or a plain CPU tensor (see
    :func:`_plain_cpu_tensor`): everything else takes the reference path."""
    if type(x) is np.ndarray or type(x) is np.memmap:
        if x.dtype.kind not in "biuf" or not x.dtype.isnative:
            return None
        return x if type(x) is np.ndarray else x.view(np.ndarray)
    if _plain_cpu_tensor(x) and (allow_grad or not x.requires_grad):
        return x.detach().numpy()
    return None


def _weights(sample_weight: Any, loss_shape: tuple[int, ...], dtype: Any) -> tuple[Any, ...] | None:
    """``(w, w_step, weight_sum)`` for the kernels, or None to fall back.

    Weights are rounded to the loss's dtype first, as the reference casts them.
    """
    if sample_weight is None:
        return _ONE, 0, None
    if isinstance(sample_weight, numbers.Real) and not isinstance(sample_weight, bool):
        value = float(np.asarray(sample_weight, dtype=dtype))
        return np.array([value]), 0, value
    weights = _host_array(sample_weight)
    if weights is None or weights.dtype.kind not in "biuf":
        return None
    if weights.ndim == 0:
        value = float(weights.astype(dtype))
        return np.array([value]), 0, value
    if weights.ndim == len(loss_shape) + 1 and weights.shape[-1] == 1:
        weights = weights.reshape(weights.shape[:-1])
    if tuple(weights.shape) != loss_shape:
        return None
    flat = np.ascontiguousarray(weights.astype(dtype).reshape(-1), dtype=np.float64)
    return flat, 1, float(flat.sum())  # an inf or NaN weight makes the total NaN


@dataclass
class _Inputs:
    t: np.ndarray  # (rows, features), or (rows,) labels
    p: np.ndarray  # (rows, features)
    rows: int


def _inputs(plan: Plan, y_true: Any, y_pred: np.ndarray, dtype: Any) -> _Inputs | None:
    t = _host_array(y_true)
    if t is None:  # (size and rank: checked by _large_enough before the lock)
        return None
    if plan.labels:
        if t.dtype.kind not in "iuf" or t.dtype == np.float16:  # (Numba has no float16)
            return None
        if y_pred.shape[-1] == 1 and t.ndim == y_pred.ndim - 1:
            return None  # Keras squeezes such a y_pred first, then rejects the shapes
        if t.ndim == y_pred.ndim and t.shape[-1] == 1:
            t = t.reshape(t.shape[:-1])
        if t.shape != y_pred.shape[:-1]:
            return None
    else:
        if t.dtype != dtype:
            return None
        t, aligned = _array.align_ranks(_array.numpy_namespace(), t, y_pred)
        if aligned is not y_pred or t.shape != y_pred.shape:
            return None
    if not (t.flags.c_contiguous and y_pred.flags.c_contiguous):
        return None
    features = y_pred.shape[-1]
    p2 = y_pred.reshape(-1, features)
    t2 = t.reshape(-1) if plan.labels else t.reshape(-1, features)
    return _Inputs(t2, p2, p2.shape[0])


# --- the call -------------------------------------------------------------------


def fused_call(loss: Any, y_true: Any, y_pred: Any, sample_weight: Any, mask: Any) -> Any:
    """The reduced loss from a fused kernel, or None where none applies."""
    if not _compiling() and routes_to_triton(y_pred):  # CUDA: the Triton kernels or the reference
        from losskit.kernels import triton as gpu

        return gpu.fused_call(loss, y_true, y_pred, sample_weight, mask)
    if _compiling() or not _NUMBA or _DECLINED.get() or not _large_enough(y_pred):
        return None  # before the lock: torch.compile cannot trace a lock
    if _config.backend_preference() != "fast":
        return None
    with _KERNEL_LOCK:
        return _fused_call(loss, y_true, y_pred, sample_weight, mask)


def lowering_first_on_gpu(y_pred: Any) -> bool:
    """For a call that :func:`routes_to_triton`: whether a loss that torch's
    operations lower takes them before the kernels, that is below
    :data:`TRITON_MIN_ELEMENTS`, except inside a CUDA graph capture under
    ``losskit.kernels.triton.assume_finite()``, where the kernels keep it."""
    if y_pred.numel() >= TRITON_MIN_ELEMENTS:
        return False
    if _compiling():
        return True  # (nothing below is traced; torch.compile takes the lowering)
    hook = sys.modules.get("losskit.kernels.triton")
    return hook is None or not hook.keeps_captured_calls(y_pred)


def routes_to_triton(y_pred: Any) -> bool:
    """A CUDA torch tensor (or, inside the test hook
    ``losskit.kernels.triton.interpret_on_cpu``, any torch tensor)."""
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(y_pred, torch.Tensor):
        return False
    if y_pred.device.type == "cuda":
        return True
    hook = sys.modules.get("losskit.kernels.triton")
    # the hook reads a ContextVar, which torch.compile cannot trace
    return hook is not None and not _compiling() and bool(hook.routes_cpu())


def _large_enough(y_pred: Any) -> bool:
    """At least :data:`MIN_ELEMENTS` elements and rank 2, read off the shape
    alone (small batches, the common case in training, leave at once)."""
    shape = getattr(y_pred, "shape", None)
    if shape is None or len(shape) < 2:
        return False
    count = 1
    for dim in shape:
        if not isinstance(dim, int):
            return False  # unknown (Dask, jit tracing)
        count *= dim
    return count >= MIN_ELEMENTS


def _fused_call(loss: Any, y_true: Any, y_pred: Any, sample_weight: Any, mask: Any) -> Any:
    if mask is not None or loss.reduction in (None, "none"):
        return None
    is_torch = _plain_cpu_tensor(y_pred)
    p = _host_array(y_pred, allow_grad=True)
    if p is None or p.dtype.name != loss.dtype or p.dtype.name not in ("float32", "float64"):
        return None
    plan = _plan(loss, p.ndim)
    if plan is None:
        return None
    inputs = _inputs(plan, y_true, p, p.dtype)
    if inputs is None:
        return None
    if plan.overlap:
        if sample_weight is not None:
            return None
        return _overlap_call(loss, plan, inputs, y_true, y_pred, is_torch)
    weights = _weights(sample_weight, tuple(p.shape[:-1]), p.dtype)
    if weights is None:
        return None
    scale = _reduction_scale(loss.reduction, inputs.rows, weights[2])
    if is_torch and y_pred.requires_grad and _grad_enabled():
        from losskit.kernels import _torch

        gradient = _torch.new_gradient_buffer(tuple(y_pred.shape), y_pred.dtype)
        grad = gradient.numpy().reshape(inputs.p.shape)
        total = _forward_backward(plan, inputs, weights, scale, grad)
        if not math.isfinite(total):
            return None  # inf or NaN somewhere: the reference decides the pattern
        reference = _reference_of(loss, y_true, sample_weight)
        return _torch.with_gradient(y_pred, _scaled(total, scale), gradient, reference)
    total = _forward(plan, inputs, weights)
    if not math.isfinite(total):
        return None
    return _result(_scaled(total, scale), y_pred, is_torch)


# --- several losses in one pass ----------------------------------------------------

# The slot of each loss in _numba_regression.regression_sums, and the constants
# it takes there.
_REGRESSION_SLOTS = {
    "squared_error": (0, ()),
    "absolute_error": (1, ()),
    "absolute_percentage_error": (2, ("epsilon",)),
    "squared_logarithmic_error": (3, ("epsilon",)),
    "huber": (4, ("delta",)),
    "log_cosh": (5, ()),
    "cosine_similarity": (6, ("epsilon",)),
}


def regression_sums(
    losses: Sequence[Any | None],
    y_true: Any,
    y_pred: Any,
    sample_weight: Any,
    groups: tuple[np.ndarray, int] | None = None,
) -> list[Any] | None:
    """``sum_i w_i loss_i`` of several built-in losses over one batch, from
    one pass over it (:mod:`losskit.kernels._numba_regression`): MSE, MAE,
    MAPE, MSLE, Huber, log-cosh and cosine similarity over the last axis.

    Returns one entry per loss: its weighted sum, or None for a loss the
    pass does not cover (None, another loss, another dtype, a second Huber with
    another delta, a sum that is not finite: the reference decides the
    inf/NaN pattern) -- or None instead of the list where no pass applies
    (fewer than two such losses, inputs that are not NumPy arrays of one
    float dtype and shape (rows, features), too few elements, weights other
    than one per row, no Numba, the backend preference ``"reference"``,
    inside :func:`declined`).
    """
    if not _NUMBA or _DECLINED.get() or _config.backend_preference() != "fast":
        return None
    if type(y_pred) is not np.ndarray or type(y_true) is not np.ndarray:
        return None
    dtype = y_pred.dtype
    if dtype.name not in ("float32", "float64") or y_true.dtype != dtype:
        return None
    if y_pred.ndim != 2 or y_true.shape != y_pred.shape or y_pred.size < MIN_ELEMENTS:
        return None
    slots, constants = _regression_slots(losses, dtype.name)
    if sum(slot is not None for slot in slots) < 2:
        return None
    weights = _weights(sample_weight, y_pred.shape[:1], dtype)
    if weights is None:
        return None
    constants = {"epsilon": _config.epsilon(), "delta": 1.0, **constants}
    eps = dtype.type(constants["epsilon"])
    delta = dtype.type(delta_within(constants["delta"], np, dtype))
    t, p = np.ascontiguousarray(y_true), np.ascontiguousarray(y_pred)
    if groups is not None:
        return _grouped_regression_pass(t, p, weights, eps, delta, groups, slots)
    with _KERNEL_LOCK:
        sums = _regression_pass(t, p, weights, eps, delta)
    found = [None if slot is None else sums[slot] for slot in slots]
    return [None if x is None or not math.isfinite(x) else x for x in found]


def _grouped_regression_pass(
    t: np.ndarray,
    p: np.ndarray,
    weights: tuple[Any, ...],
    eps: Any,
    delta: Any,
    groups: tuple[np.ndarray, int],
    slots: list[int | None],
) -> list[Any]:
    """Per group: each loss's weighted sums from the one-pass kernel's row
    losses, or None where a sum is not finite."""
    from losskit.kernels import _numba_regression as kernel

    inverse, n_groups = groups
    w, w_step, _ = weights
    with _KERNEL_LOCK:
        values = kernel.row_losses(t, p, eps, delta)
    weight = w if w_step else w[0]
    found = [
        None
        if slot is None
        else np.bincount(inverse, weights=values[slot] * weight, minlength=n_groups)
        for slot in slots
    ]
    return [None if x is None or not np.isfinite(x).all() else x for x in found]


def _regression_pass(
    t: np.ndarray, p: np.ndarray, weights: tuple[Any, ...], eps: Any, delta: Any
) -> list[float | None]:
    """The seven sums of the one-pass kernel (None: cosine similarity, where
    it needs a pass of its own)."""
    from losskit.kernels import _numba_regression as kernel

    w, w_step, _ = weights
    features = p.shape[1]
    if w_step and features > 1:  # one weight per row of several features
        return [float(x) for x in kernel.row_sums(t, p, w, eps, delta)]
    totals = np.zeros(7)
    for start, stop in _block_bounds(p.size):
        tb = t.reshape(-1)[start:stop].reshape(-1, min(BLOCK, stop - start))
        pb = p.reshape(-1)[start:stop].reshape(tb.shape)
        if w_step:  # one feature: a weight per element
            wb = w[start:stop].reshape(tb.shape)
            totals += kernel.blocked_weighted_sums(tb, pb, wb, eps, delta)
        else:
            totals += kernel.blocked_sums(tb, pb, eps, delta)
    if not w_step:
        totals *= w[0] / features  # the mean over a row, times the one weight
    sums: list[float | None] = [float(x) for x in totals]
    if features > 1:
        sums[6] = None
    return sums


def _block_bounds(size: int) -> list[tuple[int, int]]:
    """The whole blocks of the flat elements, then the rest."""
    full = size - size % BLOCK
    return [(0, full)] * bool(full) + [(full, size)] * bool(size > full)


def _regression_slots(
    losses: Sequence[Any | None], dtype: str
) -> tuple[list[int | None], dict[str, float]]:
    """Each loss's slot in the one-pass kernel, or None: each slot once, and
    every constant (epsilon, delta) the same across the losses that share it;
    and those constants."""
    slots: list[int | None] = []
    taken: set[int] = set()
    constants: dict[str, float] = {}
    for loss in losses:
        plan = _plan(loss, 2) if loss is not None and type(loss) in _SELECTORS else None
        found = None if plan is None else _REGRESSION_SLOTS.get(plan.binding.entry)
        if (
            loss is None
            or found is None
            or found[0] in taken
            or loss.dtype != dtype
            or loss.reduction in (None, "none")
        ):
            slots.append(None)
            continue
        slot, names = found
        values = dict(plan.binding.constants)  # type: ignore[union-attr]
        if any(constants.setdefault(name, values[name]) != values[name] for name in names):
            slots.append(None)
            continue
        taken.add(slot)
        slots.append(slot)
    return slots, constants


def _reference_of(loss: Any, y_true: Any, sample_weight: Any) -> Callable[[Any], Any]:
    """The loss of ``y_pred`` through the reference path, for double backward."""

    def reference(y_pred: Any) -> Any:
        with _config.prefer_backend("reference"):
            return loss(y_true, y_pred, sample_weight)

    return reference


def _grad_enabled() -> bool:
    return bool(sys.modules["torch"].is_grad_enabled())


def _reduction_scale(reduction: str, rows: int, weight_sum: float | None) -> float:
    """What the weighted sum of losses is multiplied by; 0 for a zero divisor
    (divide-no-nan, see :func:`_scaled`)."""
    if reduction == "sum":
        return 1.0
    divisor = (
        float(rows) if reduction != "mean_with_sample_weight" or weight_sum is None else weight_sum
    )
    return 0.0 if divisor == 0 else 1.0 / divisor


def _scaled(total: float, scale: float) -> float:
    """The reduced loss: a zero divisor gives 0 even where the sum is NaN or
    inf (the reference's divide-no-nan selects 0, it does not multiply)."""
    return total * scale if scale != 0.0 else 0.0


BLOCK = 1 << 12


def _blocks(plan: Plan, inputs: _Inputs, w_step: int) -> list[tuple[Any, ...]] | None:
    """With one weight for all rows, an elementwise loss does not care where
    rows end: its flat arrays are cut into long blocks (plus a tail) so the
    inner loop stays long and vectorised even for rows of one feature.  Each
    item is ``(t, p, grad_view_index, rescale)``; a block kernel divides by the
    block length, so its result is rescaled by ``block length / features``."""
    if w_step or not plan.elementwise or inputs.p.shape[1] >= BLOCK:
        return None
    size = inputs.p.size
    flat_t, flat_p = inputs.t.reshape(-1), inputs.p.reshape(-1)
    full = size - size % BLOCK
    parts: list[tuple[Any, ...]] = []
    if full:
        parts.append((flat_t[:full].reshape(-1, BLOCK), flat_p[:full].reshape(-1, BLOCK), 0, full))
    if size > full:
        parts.append((flat_t[full:].reshape(1, -1), flat_p[full:].reshape(1, -1), full, size))
    return parts


def _labels_not_all_binary(t: np.ndarray) -> bool:
    """Whether the first few hinge labels already show a value other than 0
    and 1 (then Keras does not convert them, and the gradient pass that
    assumes conversion would be wasted: -1/1 labels show it at once)."""
    head = t.reshape(-1)[:4096]
    return bool(np.any((head != 0) & (head != 1)))


def _constants(plan: Plan, p: np.ndarray) -> tuple[Any, ...]:
    """The loss's constants (epsilon, delta, ...) in the dtype of the input, as
    the reference and Keras hold them, so float32 kernels compute in float32
    (Huber's delta within the dtype's range, as the reference holds it)."""
    a = plan.a
    if plan.binding.entry == "huber":
        a = delta_within(a, np, p.dtype)
    return tuple(p.dtype.type(x) for x in (a, plan.b, *plan.more))


def _rescale(plan: Plan, block: np.ndarray, features: int) -> float:
    return block.shape[1] / features if plan.averaged else 1.0


def _forward(plan: Plan, inputs: _Inputs, weights: tuple[Any, ...]) -> float:
    w, w_step, _ = weights
    blocks = _blocks(plan, inputs, w_step)
    if blocks is None:
        return _checked(
            plan, plan.forward(inputs.t, inputs.p, w, w_step, *_constants(plan, inputs.p))
        )
    results = [
        (plan.forward(t, p, w, 0, *_constants(plan, p)), _rescale(plan, p, inputs.p.shape[1]))
        for t, p, _, _ in blocks
    ]
    if plan.checked_hinge:
        non_binary = sum(r[2] for r, _ in results)
        return sum(float(r[1] if non_binary else r[0]) * k for r, k in results)
    return sum(float(r) * k for r, k in results)


def _checked(plan: Plan, result: Any) -> float:
    if plan.checked_hinge:
        converted, raw, non_binary = result
        return float(raw if non_binary else converted)
    return float(result)


def _forward_backward(
    plan: Plan, inputs: _Inputs, weights: tuple[Any, ...], scale: float, grad: np.ndarray
) -> float:
    from losskit.kernels import _numba_elementwise as elementwise

    w, w_step, _ = weights
    blocks = _blocks(plan, inputs, w_step)
    if blocks is None:
        pieces = [(inputs.t, inputs.p, grad, 1.0)]
    else:
        flat_grad = grad.reshape(-1)
        pieces = [
            (t, p, flat_grad[start:stop].reshape(p.shape), _rescale(plan, p, inputs.p.shape[1]))
            for t, p, start, stop in blocks
        ]
    total = 0.0
    non_binary = 0
    if plan.checked_hinge and _labels_not_all_binary(inputs.t):
        non_binary = 1  # known already: skip the converting pass
    else:
        for t, p, g, rescale in pieces:
            result = plan.forward_backward(
                t, p, w, w_step, *_constants(plan, p), scale * rescale, g
            )
            if plan.checked_hinge:
                result, count = result
                non_binary += count
            total += float(result) * rescale
    if non_binary:  # hinge labels are not all 0/1: no conversion, one more pass
        total = 0.0
        for t, p, g, rescale in pieces:
            _, b = _constants(plan, p)
            result = elementwise.hinge_forward_backward(
                t, p, w, w_step, p.dtype.type(0), b, scale * rescale, g
            )
            total += float(result) * rescale
    return total


def _result(value: float, like: Any, is_torch: bool) -> Any:
    if is_torch:
        torch = sys.modules["torch"]
        return torch.tensor(value, dtype=like.dtype)
    return np.asarray(value, dtype=like.dtype)


def _overlap_call(
    loss: Any, plan: Plan, inputs: _Inputs, y_true: Any, y_pred: Any, is_torch: bool
) -> Any:
    # NumPy scalars: overflow gives inf (as in the reference), not OverflowError.
    intersection, true_sum, pred_sum = map(np.float64, plan.forward(inputs.t, inputs.p))
    eps = _config.epsilon()
    # The value as the reference finishes it; the gradient, d value / d p =
    # slope * t + offset, derived by hand from the same expression.
    if plan.binding.entry == "dice":
        value = segmentation.dice_from_sums(intersection, true_sum, pred_sum)
        denominator = true_sum + pred_sum + eps
        slope = -2.0 / denominator
        offset = 2.0 * intersection / denominator / denominator
    else:
        alpha, beta = plan.binding.constant("alpha"), plan.binding.constant("beta")
        false_positive = pred_sum - intersection
        false_negative = true_sum - intersection
        value = segmentation.tversky_from_counts(
            intersection, false_positive, false_negative, alpha, beta
        )
        denominator = intersection + alpha * false_positive + beta * false_negative + eps
        slope = -1.0 / denominator + intersection * (1.0 - alpha - beta) / denominator / denominator
        offset = intersection * alpha / denominator / denominator
    if not all(map(math.isfinite, (value, slope, offset))):
        return None  # inf or NaN inputs, or sums beyond float64: the reference decides
    if is_torch and y_pred.requires_grad and _grad_enabled():
        from losskit.kernels import _torch

        def gradient(grad: np.ndarray) -> None:
            with _KERNEL_LOCK:
                plan.forward_backward(inputs.t, slope, offset, grad.reshape(inputs.p.shape))

        reference = _reference_of(loss, y_true, None)
        return _torch.with_deferred_gradient(y_pred, value, gradient, reference)
    return _result(value, y_pred, is_torch)
