"""The fused GPU path: Triton kernels for PyTorch CUDA tensors (the ``gpu`` extra).

:func:`losskit.kernels.fused_call` hands a CUDA ``y_pred`` here.  Where the
call is supported (below) one kernel pass computes the loss and, when
``y_pred`` requires grad, writes its gradient in the same pass, so
``backward()`` only scales it by the upstream gradient (on the device, and not
at all when that is 1).  Everything else returns None, and the array-API
reference runs.

Supported: a built-in loss with a kernel binding in :mod:`losskit.spec` (the
elementwise regression, hinge, Poisson, KL, binary crossentropy and binary
focal losses; the row-wise categorical, categorical focal (one ``alpha``) and
sparse crossentropies, generalized crossentropy, categorical hinge and cosine
similarity on the last axis; Dice and Tversky over the whole array; sparse
crossentropy also with ``ignore_class``; not CTC or Circle), the class's
``dtype`` float32 (the reference's compute precision), ``y_pred`` a contiguous
float32, bfloat16, float16 or float64 tensor of rank >= 2, ``y_true`` a contiguous tensor of the
same shape on the same device (labels: ``y_pred``'s shape without the class
axis), ``sample_weight`` None, a number, a 0-d tensor or one weight per sample,
no ``mask``, and any reduction.  Inputs are read in their own dtype and
computed in float32; partial sums per block are added in a fixed order
(deterministic).  A result that is not finite (each partial sum carries a guard
that is NaN for an inf or NaN input) hands the call to the reference, which
defines the inf/NaN pattern: that check reads one number back to the host.

:func:`cross_entropy_inplace_grad` writes the crossentropy's gradient into the
logits' own buffer (opt-in), for vocabulary-sized logits.

Tests run the same kernels on CPU tensors under ``TRITON_INTERPRET=1`` with
:func:`interpret_on_cpu`.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib.util
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from losskit import _config
from losskit.functional.regression import delta_within

__all__ = [
    "assume_finite",
    "available",
    "cross_entropy_inplace_grad",
    "fused_call",
    "interpret_on_cpu",
    "routes_cpu",
]

ELEMENT_BLOCK = 2048
"""Elements per program of the elementwise kernels (a tile of rows x features).
On an H100, 2048 and 4096 with 4 warps measured within 3% of each other and
16384 up to 5x slower (``benchmarks/gpu_tune.py``; its results are in
``benchmarks/results/gpu_tune_NVIDIA-H100-80GB-HBM3.json``)."""
CLASS_BLOCK = 4096
"""Classes per chunk of the row-wise kernels (a row of any length is read in chunks)."""
SUM_BLOCK = 4096
"""Partial sums per program in the second stage of a reduction."""
NUM_WARPS = 4
"""Warps per program of the elementwise and row-wise kernels."""
SCALE_PROGRAMS = 1024
"""Programs of the backward scaling kernel, each striding over the tiles
(about eight per multiprocessor of an H100)."""

_FLOAT_DTYPES = ("float32", "bfloat16", "float16", "float64")
_LABEL_DTYPES = ("int8", "int16", "int32", "int64", "uint8", *_FLOAT_DTYPES)
_ROUTE_CPU: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "losskit_triton_on_cpu", default=False
)
_ASSUME_FINITE: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "losskit_triton_assume_finite", default=False
)


@functools.cache
def available() -> bool:
    """Whether Triton (the ``gpu`` extra) is installed.

    >>> isinstance(available(), bool)
    True
    """
    return importlib.util.find_spec("triton") is not None


def routes_cpu() -> bool:
    """Whether CPU tensors take this path (inside :func:`interpret_on_cpu`)."""
    return _ROUTE_CPU.get()


@contextlib.contextmanager
def interpret_on_cpu() -> Iterator[None]:
    """Route CPU torch tensors to the Triton kernels in this block (a test
    hook: Triton's interpreter, ``TRITON_INTERPRET=1`` set before Triton is
    first imported, runs them with NumPy)."""
    if os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError(
            "interpret_on_cpu needs TRITON_INTERPRET=1 in the environment before "
            "triton is imported; it is not set."
        )
    token = _ROUTE_CPU.set(True)
    try:
        yield
    finally:
        _ROUTE_CPU.reset(token)


@contextlib.contextmanager
def assume_finite() -> Iterator[None]:
    """Inside this block the fused GPU kernels do not read each call's total
    back to the host to check it for inf and NaN: no synchronisation per call,
    and calls inside a CUDA graph capture keep the kernels.

    By default a call whose inputs (or derivatives) hold inf or NaN is handed
    to the reference, which gives Keras's exact inf/NaN pattern; deciding that
    costs one device-to-host read per call, which stops the host from running
    ahead of the GPU.  Here that read is skipped, so such a call keeps the
    kernels' result instead: a reduced loss is NaN (every partial sum carries
    a guard that is NaN for a non-finite input), and per-sample values
    (``reduction=None``) and gradients are whatever the kernels' formulas give
    for them.  For finite inputs the results are the same numbers, bit for
    bit.  Per thread (a context variable), like :func:`losskit.prefer_backend`.

    >>> import losskit
    >>> from losskit.kernels.triton import assume_finite
    >>> loss = losskit.MeanSquaredError()
    >>> with assume_finite():
    ...     value = loss([[0.0, 1.0]], [[1.0, 1.0]])  # (on CUDA tensors: no sync)
    >>> float(value)
    0.5
    """
    token = _ASSUME_FINITE.set(True)
    try:
        yield
    finally:
        _ASSUME_FINITE.reset(token)


def _k() -> Any:
    from losskit.kernels.triton import _kernels

    return _kernels


# --- what a call needs ------------------------------------------------------------


@dataclass(frozen=True)
class _Kernel:
    """How a kernel entry of :func:`losskit.kernels.entries` runs here."""

    layout: str  # "elementwise", "rows", "labels" or "overlap"
    loss: int  # the kernel's constexpr LOSS id
    averaged: bool = True


@functools.cache
def _table() -> dict[str, _Kernel]:
    k = _k()
    rows, labels = "rows", "labels"
    return {
        "squared_error": _Kernel("elementwise", k.SQUARED_ERROR),
        "absolute_error": _Kernel("elementwise", k.ABSOLUTE_ERROR),
        "absolute_percentage_error": _Kernel("elementwise", k.ABSOLUTE_PERCENTAGE_ERROR),
        "squared_logarithmic_error": _Kernel("elementwise", k.SQUARED_LOGARITHMIC_ERROR),
        "huber": _Kernel("elementwise", k.HUBER),
        "log_cosh": _Kernel("elementwise", k.LOG_COSH),
        "poisson": _Kernel("elementwise", k.POISSON),
        "kl_divergence": _Kernel("elementwise", k.KL_DIVERGENCE, averaged=False),
        "binary_crossentropy": _Kernel("elementwise", k.BINARY_CROSSENTROPY),
        "binary_crossentropy_from_logits": _Kernel("elementwise", k.BINARY_CROSSENTROPY_LOGITS),
        "hinge": _Kernel("elementwise", k.HINGE),
        "categorical_crossentropy": _Kernel(rows, k.CATEGORICAL),
        "categorical_crossentropy_from_logits": _Kernel(rows, k.CATEGORICAL_LOGITS),
        "sparse_categorical_crossentropy": _Kernel(labels, k.SPARSE),
        "sparse_categorical_crossentropy_from_logits": _Kernel(labels, k.SPARSE_LOGITS),
        "categorical_hinge": _Kernel(rows, k.CATEGORICAL_HINGE),
        "cosine_similarity": _Kernel(rows, k.COSINE),
        "dice": _Kernel("overlap", 0),
        "tversky": _Kernel("overlap", 1),
        "binary_focal_crossentropy": _Kernel("elementwise", k.BINARY_FOCAL),
        "binary_focal_crossentropy_from_logits": _Kernel("elementwise", k.BINARY_FOCAL_LOGITS),
        "categorical_focal_crossentropy": _Kernel(rows, k.CATEGORICAL_FOCAL),
        "categorical_focal_crossentropy_from_logits": _Kernel(rows, k.CATEGORICAL_FOCAL_LOGITS),
        "categorical_generalized_cross_entropy": _Kernel(labels, k.GENERALIZED),
    }


def _f32(x: float) -> float:
    """``x`` rounded to float32, as the reference holds a Python constant."""
    return float(np.float32(x))


Constants = tuple[float, float, float, float, float, float, float]


def _constants(binding: Any, classes: int) -> Constants:
    """``k0..k6`` of the kernels (see :mod:`._kernels`) for a spec binding."""
    values = dict(binding.constants)
    eps = values.get("epsilon", 0.0)
    smoothing = values.get("label_smoothing", 0.0)
    entry = binding.entry
    if entry == "huber":
        # (the kernels compute in float32: a larger delta would be inf there)
        return _f32(delta_within(values["delta"], np, np.float32)), 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    if entry == "hinge":
        return 0.0, values["squared"], 0.0, 0.0, 0.0, 0.0, 0.0
    if entry == "cosine_similarity":
        return _f32(eps * eps), 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    if entry == "categorical_generalized_cross_entropy":
        return _f32(values["q"]), 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    share = smoothing * 0.5 if entry.startswith("binary_") else smoothing / classes
    clip = _f32(eps), _f32(1.0 - eps), _f32(1.0 - smoothing), _f32(share)
    if entry.startswith("binary_focal"):
        return (
            *clip,
            _f32(values["gamma"]),
            _f32(values["weight_one"]),
            _f32(values["weight_zero"]),
        )
    if entry.startswith("categorical_focal"):
        return (*clip, _f32(values["gamma"]), _f32(values["alpha"]), 0.0)
    return (*clip, 0.0, 0.0, 0.0)


def _square(binding: Any) -> bool:
    """Whether the kernel's focal power is a square (``gamma = 2``, the default)."""
    return dict(binding.constants).get("gamma") == 2.0


def _binding(loss: Any, ndim: int) -> tuple[Any, int | None] | None:
    """The loss's kernel binding and its ``ignore_class`` (sparse crossentropy
    with ``ignore_class``, which the CPU kernels leave to the reference, runs
    here: its mask is a row weight)."""
    from losskit import kernels

    selector = kernels._SELECTORS.get(type(loss))
    if selector is None:
        return None
    arguments = dict(loss.arguments)
    ignore = arguments.get("ignore_class")
    if ignore is not None:
        arguments["ignore_class"] = None
    binding = selector(arguments, ndim)
    if binding is None or (ignore is not None and not binding.entry.startswith("sparse")):
        return None
    return binding, ignore


def _tensor_ok(x: Any, device: Any) -> bool:
    """A dense, contiguous torch tensor on ``device`` (not a subclass, not
    wrapped by torch.func, no lazy conjugate or negation, no forward-mode tangent)."""
    torch = sys.modules["torch"]
    if type(x) not in (torch.Tensor, torch.nn.Parameter) or x.device != device:
        return False
    if x.layout != torch.strided or not x.is_contiguous() or x.is_conj() or x.is_neg():
        return False
    if torch._C._functorch.is_functorch_wrapped_tensor(x):
        return False
    if torch._C._are_functorch_transforms_active():
        return False  # a plain tensor captured by the transform
    return int(torch.autograd.forward_ad._current_level) < 0


def _dtype_name(x: Any) -> str:
    return str(x.dtype).removeprefix("torch.")


@dataclass
class _Weights:
    tensor: Any  # a float32 device tensor (None: no weights)
    stride: int  # 1 per row, 0 one for all
    divisor: Any  # the sum of the (aligned, not broadcast) weights, or None
    expanded: bool = False  # (N, 1) weights for (N,) losses: Keras expands the losses


def _weights(sample_weight: Any, loss_shape: tuple[int, ...], like: Any) -> _Weights | None:
    torch = sys.modules["torch"]
    if sample_weight is None:
        return _Weights(None, 0, None)
    if isinstance(sample_weight, (int, float)) and not isinstance(sample_weight, bool):
        one = torch.full((1,), _f32(sample_weight), dtype=torch.float32, device=like.device)
        return _Weights(one, 0, one)
    if not _tensor_ok(sample_weight, like.device) or sample_weight.requires_grad:
        return None
    if _dtype_name(sample_weight) not in _LABEL_DTYPES:
        return None
    w = sample_weight.to(torch.float32)
    if w.ndim == 0:
        one = w.reshape(1)
        return _Weights(one, 0, one)
    expanded = False
    if w.ndim == len(loss_shape) + 1 and w.shape[-1] == 1:
        expanded = len(loss_shape) == 1  # a rank-1 partner is expanded, else squeezed
        w = w.reshape(w.shape[:-1])
    if tuple(w.shape) != loss_shape:
        return None
    w = w.reshape(-1).contiguous()
    return _Weights(w, 1, torch.sum(w).reshape(1), expanded)


def _true_ok(y_true: Any, y_pred: Any, layout: str) -> Any:
    """``y_true`` as the kernels read it, or None to fall back."""
    if not _tensor_ok(y_true, y_pred.device) or _dtype_name(y_true) not in _LABEL_DTYPES:
        return None
    if layout == "labels":
        shape = tuple(y_pred.shape[:-1])
        if tuple(y_true.shape) not in (shape, (*shape, 1)):
            return None
        if y_pred.shape[-1] == 1 and y_true.ndim == y_pred.ndim - 1:
            return None  # Keras squeezes such a y_pred first, then rejects the shapes
        return y_true.reshape(-1)
    if tuple(y_true.shape) != tuple(y_pred.shape) or y_true.requires_grad:
        return None
    return y_true


# --- the call -------------------------------------------------------------------


def _launch(kernel: Any, grid: tuple[int, ...], *args: Any, **constants: Any) -> None:
    # Under the interpreter NumPy warns on inf and NaN, which the kernels meet on
    # purpose (the guards): pytest would turn those warnings into errors.
    # No fused multiply-add contraction: the reference rounds each operation
    # (and naming the option keeps Triton 3.9 from warning about its default).
    with np.errstate(all="ignore"):
        kernel[grid](*args, enable_fp_fusion=False, **constants)


def _total(partials: Any, divisor: Any) -> Any:
    """``(total / divisor, total)`` of a float32 vector of partial sums, added
    in a fixed order: blocks of :data:`SUM_BLOCK`, level by level."""
    torch = sys.modules["torch"]
    k = _k()
    while partials.numel() > SUM_BLOCK:
        count = _cdiv(partials.numel(), SUM_BLOCK)
        level = torch.empty(count, dtype=torch.float32, device=partials.device)
        _launch(k.sum_kernel, (count,), partials, level, partials.numel(), BLOCK=SUM_BLOCK)
        partials = level
    out = torch.empty(2, dtype=torch.float32, device=partials.device)
    _launch(k.finish_kernel, (1,), partials, partials.numel(), divisor, out, BLOCK=SUM_BLOCK)
    return out


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _next_power_of_2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _divisor(reduction: str, rows: int, weights: _Weights, valid: Any, like: Any) -> Any:
    """The reduction's divisor as a 1-element float32 device tensor (Keras's
    rules, see :mod:`losskit.reduction`; a mask from ``ignore_class`` counts
    valid rows)."""
    torch = sys.modules["torch"]
    if reduction in ("sum", "none"):
        return torch.ones(1, dtype=torch.float32, device=like.device)
    if reduction == "mean_with_sample_weight" and weights.tensor is not None:
        if valid is None:
            return weights.divisor
        w = weights.tensor.expand(rows) if weights.stride == 0 else weights.tensor
        return torch.sum(w * valid).reshape(1)
    if valid is not None:
        return torch.sum(valid).reshape(1)
    return torch.full((1,), float(rows), dtype=torch.float32, device=like.device)


def _scale(divisor: Any) -> Any:
    torch = sys.modules["torch"]
    return torch.where(divisor == 0, torch.zeros_like(divisor), 1.0 / divisor)


@dataclass
class _Call:
    """One prepared call: inputs as the kernels read them, and the plan."""

    kernel: _Kernel
    constants: Constants
    square: bool  # the focal losses' gamma is 2
    t: Any
    p: Any  # y_pred (contiguous)
    rows: int
    features: int
    weights: _Weights
    ignore: int | None
    reduction: str


def _prepare(loss: Any, y_true: Any, y_pred: Any, sample_weight: Any) -> _Call | None:
    if loss.dtype != "float32" or _dtype_name(y_pred) not in _FLOAT_DTYPES:
        return None
    if not _tensor_ok(y_pred, y_pred.device) or y_pred.ndim < 2 or y_pred.numel() == 0:
        return None
    bound = _binding(loss, y_pred.ndim)
    if bound is None:
        return None
    binding, ignore = bound
    kernel = _table().get(binding.entry)  # entries without a Triton kernel: the reference
    if kernel is None:
        return None
    t = _true_ok(y_true, y_pred, kernel.layout)
    if t is None:
        return None
    features = int(y_pred.shape[-1])
    rows = y_pred.numel() // features
    weights = _weights(sample_weight, tuple(y_pred.shape[:-1]), y_pred)
    reduction = "none" if loss.reduction is None else str(loss.reduction)
    if weights is None or (ignore is not None and reduction == "none"):
        return None
    if kernel.layout == "overlap" and sample_weight is not None:
        return None
    if features == 1 and binding.entry.startswith(("categorical_focal", "categorical_cross")):
        return None  # one class: the reference warns
    constants = _constants(binding, features)
    square = _square(binding)
    return _Call(kernel, constants, square, t, y_pred, rows, features, weights, ignore, reduction)


def fused_call(loss: Any, y_true: Any, y_pred: Any, sample_weight: Any, mask: Any) -> Any:
    """The loss from the Triton kernels, or None where they do not apply."""
    torch = sys.modules.get("torch")
    if torch is None or not available() or mask is not None:
        return None
    if torch.compiler.is_compiling() or _config.backend_preference() != "fast":
        return None
    check = not _ASSUME_FINITE.get()
    if check and _capturing(y_pred):
        return None  # the finiteness check reads the total on the host: not in a graph
    call = _prepare(loss, y_true, y_pred, sample_weight)
    if call is None:
        return None
    wants_grad = bool(y_pred.requires_grad and torch.is_grad_enabled())
    gradient = torch.empty_like(y_pred) if wants_grad else None
    if call.kernel.layout == "overlap":
        result = _overlap(loss, call, gradient, check)
    else:
        result = _reduced(call, gradient, check)
    if result is None:
        return None
    value, shape_rows = result
    if gradient is None:
        return value
    from losskit import kernels

    reference = kernels._reference_of(loss, y_true, sample_weight)
    return _FusedLoss.apply(y_pred, (value, gradient, shape_rows, reference))


def keeps_captured_calls(y_pred: Any) -> bool:
    """Whether the kernels take this call before torch's lowering whatever its
    size: inside :func:`assume_finite`, while ``y_pred``'s stream is captured
    into a CUDA graph (a replayed graph has no per-call host work to save,
    and the lowering may copy a new constant from the host there)."""
    return _ASSUME_FINITE.get() and _capturing(y_pred)


def _capturing(y_pred: Any) -> bool:
    """Whether ``y_pred``'s CUDA stream is being captured into a CUDA graph,
    where reading a value back to the host (each call's finiteness check) is
    an error: the reference, which needs no such read, runs instead (unless
    :func:`assume_finite` drops the check)."""
    torch = sys.modules["torch"]
    return bool(y_pred.is_cuda and torch.cuda.is_current_stream_capturing())


def _reduced(call: _Call, grad_out: Any, check: bool = True) -> Any:
    """Run an elementwise or row kernel and the reduction: ``(value, rows)``
    where ``rows`` says the result is per sample (reduction "none"); None if
    the total is not finite (and ``check``)."""
    torch = sys.modules["torch"]
    k = _k()
    p, device = call.p, call.p.device
    valid = None
    if call.ignore is not None:
        # labels compare after the reference's cast to int32 (3.7 is class 3)
        valid = (call.t.to(torch.int32) != call.ignore).to(torch.float32)
    divisor = _divisor(call.reduction, call.rows, call.weights, valid, p)
    scale = _scale(divisor)
    store_rows = call.reduction == "none"
    rows_out = torch.empty(call.rows if store_rows else 1, dtype=torch.float32, device=device)
    w, w_stride = call.weights.tensor, call.weights.stride
    has_w = w is not None
    w_arg = w if has_w else scale  # an unused pointer still needs a tensor
    grad_arg = grad_out if grad_out is not None else p
    if call.kernel.layout == "elementwise":
        flag = torch.zeros(1, dtype=torch.float32, device=device)
        if call.kernel.loss == k.HINGE:
            flag = _not_binary(call.t)
        rows, features = call.rows, call.features
        inv = 1.0 / features if call.kernel.averaged else 1.0
        if not has_w and not store_rows:  # rows do not matter: one flat run
            rows, features = call.p.numel(), 1
        block_f = min(_next_power_of_2(features), ELEMENT_BLOCK)
        block_r = max(1, ELEMENT_BLOCK // block_f)
        programs = _cdiv(rows, block_r)
        partials = torch.empty(programs, dtype=torch.float32, device=device)
        _launch(
            k.elementwise_kernel,
            (programs,),
            call.t,
            p,
            w_arg,
            w_stride,
            scale,
            flag,
            grad_arg,
            rows_out,
            partials,
            rows,
            features,
            _f32(inv),
            *call.constants,
            LOSS=call.kernel.loss,
            SQUARE=call.square,
            HAS_W=has_w,
            WRITE_GRAD=grad_out is not None,
            STORE_ROWS=store_rows,
            BLOCK_R=block_r,
            BLOCK_F=block_f,
            num_warps=NUM_WARPS,
        )
    else:
        one_chunk_losses = (k.CATEGORICAL_LOGITS, k.SPARSE_LOGITS)  # read a short row once
        block_c = min(_next_power_of_2(call.features), CLASS_BLOCK)
        block_r = max(1, ELEMENT_BLOCK // block_c)  # short rows: several per program
        programs = _cdiv(call.rows, block_r)
        partials = torch.empty(programs, dtype=torch.float32, device=device)
        _launch(
            k.row_kernel,
            (programs,),
            call.t,
            p,
            w_arg,
            w_stride,
            scale,
            grad_arg,
            rows_out,
            partials,
            call.rows,
            call.features,
            0 if call.ignore is None else call.ignore,
            *call.constants,
            LOSS=call.kernel.loss,
            SQUARE=call.square,
            HAS_W=has_w,
            HAS_IGNORE=call.ignore is not None,
            WRITE_GRAD=grad_out is not None,
            STORE_ROWS=store_rows,
            BLOCK_R=block_r,
            BLOCK_C=block_c,
            ONE_CHUNK=call.features <= block_c and call.kernel.loss in one_chunk_losses,
            num_warps=NUM_WARPS,
        )
    out = _total(partials, divisor)
    if check and not bool(torch.isfinite(out[1]).item()):
        return None  # inf or NaN: the reference decides the pattern
    if store_rows:
        shape = (*call.p.shape[:-1], 1) if call.weights.expanded else call.p.shape[:-1]
        return rows_out.reshape(shape), True
    return out[0].clone(), False


def _not_binary(t: Any) -> Any:
    """How many hinge labels are neither 0 nor 1 (a 1-element device tensor)."""
    torch = sys.modules["torch"]
    n = t.numel()
    programs = _cdiv(n, ELEMENT_BLOCK)
    partials = torch.empty(programs, dtype=torch.float32, device=t.device)
    _launch(_k().not_binary_kernel, (programs,), t, partials, n, BLOCK=ELEMENT_BLOCK)
    one = torch.ones(1, dtype=torch.float32, device=t.device)
    return _total(partials, one)[1:]


def _overlap(loss: Any, call: _Call, gradient: Any, check: bool = True) -> Any:
    """Dice or Tversky over the whole array: three sums, the value, and the
    gradient ``slope * t + offset`` derived from the reference's expression."""
    torch = sys.modules["torch"]
    k = _k()
    n = call.p.numel()
    programs = _cdiv(n, ELEMENT_BLOCK)
    partials = torch.empty(3 * programs, dtype=torch.float32, device=call.p.device)
    _launch(
        k.overlap_kernel, (programs,), call.t, call.p, partials, n, programs, BLOCK=ELEMENT_BLOCK
    )
    one = torch.ones(1, dtype=torch.float32, device=call.p.device)
    intersection, true_sum, pred_sum = (
        _total(partials[i * programs : (i + 1) * programs], one)[1] for i in range(3)
    )
    eps = _config.epsilon()
    if call.kernel.loss == 0:
        denominator = true_sum + pred_sum + eps
        value = 1.0 - 2.0 * intersection / denominator
        slope = -2.0 / denominator
        offset = 2.0 * intersection / denominator / denominator
    else:
        alpha, beta = loss.arguments["alpha"], loss.arguments["beta"]
        false_positive = pred_sum - intersection
        false_negative = true_sum - intersection
        denominator = intersection + alpha * false_positive + beta * false_negative + eps
        value = 1.0 - intersection / denominator
        slope = -1.0 / denominator + intersection * (1.0 - alpha - beta) / denominator**2
        offset = intersection * alpha / denominator**2
    coefficients = torch.stack([slope, offset, value])
    if check and not bool(torch.isfinite(coefficients).all().item()):
        return None
    if gradient is not None:
        _launch(
            k.affine_kernel, (programs,), call.t, coefficients, gradient, n, BLOCK=ELEMENT_BLOCK
        )
    return value, False


# --- autograd -----------------------------------------------------------------------


def _scale_in_place(gradient: Any, grad_output: Any) -> None:
    torch = sys.modules["torch"]
    n = gradient.numel()
    factor = grad_output.reshape(1).to(torch.float32)
    programs = min(_cdiv(n, ELEMENT_BLOCK), SCALE_PROGRAMS)
    _launch(_k().scale_kernel, (programs,), gradient, factor, n, BLOCK=ELEMENT_BLOCK)


def _function_class() -> Any:
    torch: Any = sys.modules["torch"]

    class FusedLoss(torch.autograd.Function):
        """A loss whose gradient the forward kernels already wrote."""

        @staticmethod
        def forward(ctx: Any, y_pred: Any, payload: tuple[Any, ...]) -> Any:
            value, gradient, per_row, reference = payload
            ctx.save_for_backward(y_pred)
            ctx.gradient, ctx.per_row, ctx.reference = gradient, per_row, reference
            return value

        @staticmethod
        def backward(ctx: Any, grad_output: Any) -> tuple[Any, None]:
            if torch.is_grad_enabled():  # create_graph=True: a differentiable gradient
                if ctx.reference is None:
                    raise RuntimeError(
                        "cross_entropy_inplace_grad overwrote the logits with their "
                        "gradient: it cannot be differentiated twice."
                    )
                (y_pred,) = ctx.saved_tensors
                value = ctx.reference(y_pred)
                (gradient,) = torch.autograd.grad(value, y_pred, grad_output, create_graph=True)
                return gradient, None
            gradient, ctx.gradient = ctx.gradient, None
            if gradient is None:
                raise RuntimeError("losskit's fused loss was differentiated twice.")
            if ctx.per_row:
                rows = grad_output.reshape(-1, 1).to(torch.float32)
                gradient.copy_(
                    gradient.reshape(rows.shape[0], -1).float().mul_(rows).view_as(gradient)
                )
            else:
                _scale_in_place(gradient, grad_output)
            return gradient, None

    return FusedLoss


class _Lazy:
    """The autograd Function, built when first used (torch is imported lazily)."""

    @functools.cached_property
    def cls(self) -> Any:
        return _function_class()

    def apply(self, *args: Any) -> Any:
        return self.cls.apply(*args)


_FusedLoss = _Lazy()


# --- vocabulary-scale crossentropy -------------------------------------------------


_INPLACE_ENTRIES = (
    "categorical_crossentropy_from_logits",
    "sparse_categorical_crossentropy_from_logits",
)


def _saved_by_producer(logits: Any) -> bool:
    """Whether the autograd node that made ``logits`` saved it for its own
    backward (``exp``, ``softmax``, ``sigmoid``, ... save their output)."""
    torch = sys.modules["torch"]
    node = logits.grad_fn
    for name in dir(node):
        if not name.startswith("_saved_"):
            continue
        try:
            saved = getattr(node, name)
        except RuntimeError:  # already freed
            continue
        items = saved if isinstance(saved, (tuple, list)) else (saved,)
        for item in items:
            if isinstance(item, torch.Tensor) and item.data_ptr() == logits.data_ptr():
                return True
    return False


def _check_inplace(logits: Any) -> None:
    """Refuse where overwriting ``logits`` could change another result."""
    if logits.is_leaf:
        raise ValueError(
            "cross_entropy_inplace_grad: `logits` is a leaf tensor that requires grad "
            "(a parameter or an input the caller owns); its buffer cannot hold the "
            "gradient. Pass logits computed inside the graph (e.g. hidden @ weight.T), "
            "or call the loss object itself."
        )
    if logits._base is not None:
        raise ValueError(
            "cross_entropy_inplace_grad: `logits` is a view of another tensor "
            f"(shape {tuple(logits._base.shape)}), which others may read; pass a "
            "tensor that owns its memory (e.g. logits.contiguous() of a fresh result)."
        )
    if _saved_by_producer(logits):
        raise ValueError(
            "cross_entropy_inplace_grad: the operation that produced `logits` "
            f"({type(logits.grad_fn).__name__}) saved them for its backward pass; "
            "overwriting them would corrupt that gradient."
        )


def cross_entropy_inplace_grad(
    loss: Any, y_true: Any, logits: Any, sample_weight: Any = None
) -> Any:
    """The crossentropy ``loss(y_true, logits, sample_weight)``, with the
    gradient written into ``logits``' own buffer (opt-in; for (tokens, vocab)
    logits, peak memory stays the logits plus O(tokens)).

    ``loss`` is a :class:`~losskit.SparseCategoricalCrossentropy` or
    :class:`~losskit.CategoricalCrossentropy` with ``from_logits=True`` (any
    ``ignore_class``, ``label_smoothing`` and reduction but "none"); its Keras
    config is untouched.  After the call ``logits`` holds ``d loss / d logits``
    (``backward()`` scales it by the upstream gradient and hands it on), so the
    logits must be needed nowhere else.  The rule enforced when ``logits``
    requires grad (ValueError otherwise):

    - ``logits`` is not a leaf (a parameter's or an input's memory is the
      caller's) and not a view (its base may be read elsewhere);
    - the autograd node that produced it did not save it (checked on the node);
    - its version counter is bumped: any other operation that saved ``logits``
      for backward makes ``backward()`` fail with PyTorch's "modified by an
      inplace operation" error instead of using wrong values.

    Without grad (``torch.no_grad()``, or logits that do not require grad)
    nothing is written and the loss is computed as usual.  Inputs are read as
    they are: inf or NaN propagate into the result (there is no reference to
    fall back to once the buffer is overwritten).  Not twice differentiable.

    The loss is Keras's (``lse(x) - x[label]`` per token for sparse labels,
    ``-sum(s * log_softmax(x))`` for smoothed one-hot ``s``), reduced as the
    loss object says; the gradient is ``scale * w * (softmax(x) - onehot)``.
    On a CPU tensor (outside the test hook) it refuses:

    >>> import torch, losskit
    >>> loss = losskit.SparseCategoricalCrossentropy(from_logits=True)
    >>> cross_entropy_inplace_grad(loss, torch.tensor([1]), torch.zeros(1, 3))
    Traceback (most recent call last):
        ...
    ValueError: cross_entropy_inplace_grad needs Triton and a CUDA tensor; ...
    """
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(logits, torch.Tensor):
        raise TypeError(
            "cross_entropy_inplace_grad: `logits` must be a torch tensor. "
            f"Received: {type(logits).__name__}."
        )
    if not (logits.device.type == "cuda" or routes_cpu()) or not available():
        raise ValueError(
            "cross_entropy_inplace_grad needs Triton and a CUDA tensor; received a "
            f"tensor on {logits.device} (triton installed: {available()})."
        )
    bound = _binding(loss, logits.ndim)
    if bound is None or bound[0].entry not in _INPLACE_ENTRIES:
        raise TypeError(
            "cross_entropy_inplace_grad: `loss` must be a SparseCategoricalCrossentropy "
            "or CategoricalCrossentropy with from_logits=True and the class axis last. "
            f"Received: {loss!r}."
        )
    if loss.reduction in (None, "none"):
        raise ValueError(
            "cross_entropy_inplace_grad: reduction must reduce (not None or 'none'). "
            f"Received: reduction={loss.reduction!r}."
        )
    call = _prepare(loss, y_true, logits, sample_weight)
    if call is None:
        raise ValueError(
            "cross_entropy_inplace_grad: unsupported inputs: expected `logits` a "
            "contiguous float32/bfloat16/float16 tensor of rank >= 2, a loss of "
            "dtype float32, `y_true` a contiguous tensor on the same device (labels "
            "of shape logits.shape[:-1], or one-hot of logits' shape) and weights "
            "None, a number or one per sample. Received: "
            f"logits {tuple(logits.shape)} {logits.dtype} on {logits.device}, "
            f"y_true {getattr(y_true, 'shape', None)}, loss dtype {loss.dtype}."
        )
    wants_grad = bool(logits.requires_grad and torch.is_grad_enabled())
    if wants_grad:
        _check_inplace(logits)
    # The kernel reads a chunk of a row before it writes the same chunk, and
    # the first pass over the row is complete before any write.
    value, _ = _reduced(call, logits.detach() if wants_grad else None, check=False)
    if not wants_grad:
        return value
    torch.autograd.graph.increment_version(logits)
    return _FusedLoss.apply(logits, (value, logits.detach(), False, None))
