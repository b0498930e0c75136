"""The Triton kernels (``losskit.kernels.triton``) against the reference.

On a machine with CUDA they run on the GPU; elsewhere Triton's interpreter
(``TRITON_INTERPRET=1``, set here before the kernels are built) runs them on CPU
tensors, routed there by ``interpret_on_cpu``.  Block sizes are shrunk (see
``small_blocks``) so that small inputs already take several programs, chunked
class axes (online max and softmax) and a multi-level second stage.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
CUDA = torch.cuda.is_available()
if not CUDA:
    os.environ["TRITON_INTERPRET"] = "1"
pytest.importorskip("triton")

import losskit  # noqa: E402
from losskit import kernels  # noqa: E402
from losskit.kernels import triton as gpu  # noqa: E402

if "losskit.kernels.triton._kernels" in sys.modules:  # built before the variable was set
    importlib.reload(sys.modules["losskit.kernels.triton._kernels"])

pytestmark = pytest.mark.triton
# the package's block sizes, before the small_blocks fixture shrinks them
DEFAULT_BLOCKS = {
    name: getattr(gpu, name) for name in ("ELEMENT_BLOCK", "CLASS_BLOCK", "SUM_BLOCK")
}
DEVICE = "cuda" if CUDA else "cpu"
REDUCTIONS = ["sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none"]


def _smallest_tile() -> int:
    """Elements per program of the elementwise and row tiles in these tests.
    Triton before 3.9 fails to compile the categorical focal kernel (from
    logits, with its gradient) for a GPU when a tile holds 64 elements or fewer
    (its TritonGPUOptimizeThreadLocality pass; seen with 3.6 on an H100; 3.9
    compiles them): on such a GPU the tiles here hold 128.  losskit itself
    launches tiles of ``ELEMENT_BLOCK`` (2048 or more) elements."""
    import triton

    major, minor = (int(part) for part in triton.__version__.split(".")[:2])
    return 128 if CUDA and (major, minor) < (3, 9) else 16


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu, "ELEMENT_BLOCK", _smallest_tile())
    monkeypatch.setattr(gpu, "CLASS_BLOCK", 4)
    monkeypatch.setattr(gpu, "SUM_BLOCK", 4)
    monkeypatch.setattr(kernels, "TRITON_MIN_ELEMENTS", 0)


def on_device() -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext() if CUDA else gpu.interpret_on_cpu()


# --- inputs -------------------------------------------------------------------------

ROWS, CLASSES = 6, 9
Make = Callable[..., tuple[Any, Any]]


def _normal(g: torch.Generator, *shape: int) -> Any:
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def _unit(g: torch.Generator, *shape: int) -> Any:
    return torch.rand(*shape, generator=g, dtype=torch.float64) * 0.98 + 0.01


def _labels(g: torch.Generator, r: int, c: int) -> Any:
    return torch.randint(0, c, (r,), generator=g)


def regression(g: torch.Generator, r: int = ROWS, c: int = CLASSES) -> tuple[Any, Any]:
    return _normal(g, r, c), _normal(g, r, c)


def positive(g: torch.Generator, r: int = ROWS, c: int = CLASSES) -> tuple[Any, Any]:
    return _unit(g, r, c) * 3, _unit(g, r, c) * 3


def binary(g: torch.Generator, r: int = ROWS, c: int = CLASSES) -> tuple[Any, Any]:
    return (_unit(g, r, c) > 0.5).double(), _unit(g, r, c)


def binary_logits(g: torch.Generator, r: int = ROWS, c: int = CLASSES) -> tuple[Any, Any]:
    return (_unit(g, r, c) > 0.5).double(), _normal(g, r, c) * 3


def signs(g: torch.Generator, r: int = ROWS, c: int = CLASSES) -> tuple[Any, Any]:
    return torch.sign(_normal(g, r, c)), _normal(g, r, c)


def distributions(g: torch.Generator, r: int = ROWS, c: int = CLASSES) -> tuple[Any, Any]:
    return torch.softmax(_normal(g, r, c), -1), _unit(g, r, c)


def soft_logits(g: torch.Generator, r: int = ROWS, c: int = CLASSES) -> tuple[Any, Any]:
    return torch.softmax(_normal(g, r, c), -1), _normal(g, r, c) * 3


def one_hot_scores(g: torch.Generator, r: int = ROWS, c: int = CLASSES) -> tuple[Any, Any]:
    hot = torch.nn.functional.one_hot(_labels(g, r, c), c).double()
    return hot, _normal(g, r, c)


def labels_logits(g: torch.Generator, r: int = ROWS, c: int = CLASSES) -> tuple[Any, Any]:
    return _labels(g, r, c), _normal(g, r, c) * 3


def labels_probabilities(g: torch.Generator, r: int = ROWS, c: int = CLASSES) -> tuple[Any, Any]:
    return _labels(g, r, c), _unit(g, r, c)


def masks(g: torch.Generator, r: int = ROWS, c: int = CLASSES) -> tuple[Any, Any]:
    return (_unit(g, r, c) > 0.5).double(), _unit(g, r, c)


CASES: list[tuple[str, Callable[..., Any], Make]] = [
    ("mse", lambda **k: losskit.MeanSquaredError(**k), regression),
    ("mae", lambda **k: losskit.MeanAbsoluteError(**k), regression),
    ("mape", lambda **k: losskit.MeanAbsolutePercentageError(**k), regression),
    ("msle", lambda **k: losskit.MeanSquaredLogarithmicError(**k), positive),
    ("huber", lambda **k: losskit.Huber(delta=0.7, **k), regression),
    ("log_cosh", lambda **k: losskit.LogCosh(**k), regression),
    ("poisson", lambda **k: losskit.Poisson(**k), positive),
    ("kl", lambda **k: losskit.KLDivergence(**k), distributions),
    ("bce", lambda **k: losskit.BinaryCrossentropy(label_smoothing=0.1, **k), binary),
    (
        "bce_logits",
        lambda **k: losskit.BinaryCrossentropy(from_logits=True, label_smoothing=0.2, **k),
        binary_logits,
    ),
    ("hinge", lambda **k: losskit.Hinge(**k), binary_logits),
    ("hinge_signs", lambda **k: losskit.Hinge(**k), signs),
    ("squared_hinge", lambda **k: losskit.SquaredHinge(**k), binary_logits),
    ("cce", lambda **k: losskit.CategoricalCrossentropy(label_smoothing=0.1, **k), distributions),
    (
        "cce_logits",
        lambda **k: losskit.CategoricalCrossentropy(from_logits=True, label_smoothing=0.2, **k),
        soft_logits,
    ),
    ("scce", lambda **k: losskit.SparseCategoricalCrossentropy(**k), labels_probabilities),
    (
        "scce_logits",
        lambda **k: losskit.SparseCategoricalCrossentropy(from_logits=True, **k),
        labels_logits,
    ),
    (
        "scce_ignore",
        lambda **k: losskit.SparseCategoricalCrossentropy(from_logits=True, ignore_class=3, **k),
        labels_logits,
    ),
    ("categorical_hinge", lambda **k: losskit.CategoricalHinge(**k), one_hot_scores),
    ("cosine", lambda **k: losskit.CosineSimilarity(**k), regression),
    ("dice", lambda **k: losskit.Dice(**k), masks),
    ("tversky", lambda **k: losskit.Tversky(alpha=0.3, beta=0.8, **k), masks),
    (
        "bfocal",
        lambda **k: losskit.BinaryFocalCrossentropy(
            apply_class_balancing=True, alpha=0.3, label_smoothing=0.1, **k
        ),
        binary,
    ),
    ("bfocal_gamma", lambda **k: losskit.BinaryFocalCrossentropy(gamma=1.5, **k), binary),
    (
        "bfocal_logits",
        lambda **k: losskit.BinaryFocalCrossentropy(from_logits=True, label_smoothing=0.2, **k),
        binary_logits,
    ),
    (
        "bfocal_logits_gamma",
        lambda **k: losskit.BinaryFocalCrossentropy(
            from_logits=True, gamma=3.0, apply_class_balancing=True, **k
        ),
        binary_logits,
    ),
    (
        "cfocal",
        lambda **k: losskit.CategoricalFocalCrossentropy(label_smoothing=0.1, **k),
        distributions,
    ),
    (
        "cfocal_gamma",
        lambda **k: losskit.CategoricalFocalCrossentropy(gamma=1.5, alpha=0.7, **k),
        distributions,
    ),
    (
        "cfocal_logits",
        lambda **k: losskit.CategoricalFocalCrossentropy(
            from_logits=True, label_smoothing=0.1, **k
        ),
        soft_logits,
    ),
    (
        "cfocal_logits_gamma",
        lambda **k: losskit.CategoricalFocalCrossentropy(
            from_logits=True, gamma=0.5, alpha=1.0, **k
        ),
        soft_logits,
    ),
    (
        "gce",
        lambda **k: losskit.CategoricalGeneralizedCrossEntropy(q=0.7, **k),
        labels_probabilities,
    ),
]
IDS = [name for name, _, _ in CASES]
OVERLAP = ("dice", "tversky")
# gamma != 2 from probabilities: 1 - p_t = 0 (p of 0 or 1) gives a NaN derivative
# of the power, so the call goes to the reference (as on the CPU kernels)
POWER_AT_ZERO = ("bfocal_gamma",)
POWER_VARIANTS = ("bfocal_gamma", "bfocal_logits_gamma", "cfocal_gamma", "cfocal_logits_gamma")


def weights_of(kind: str) -> Any:
    if kind == "none":
        return None
    if kind == "number":
        return 0.7
    if kind == "0-d":
        return torch.tensor(1.5, device=DEVICE)
    w = torch.linspace(0.0, 2.0, ROWS, dtype=torch.float32, device=DEVICE)
    return w.reshape(ROWS, 1) if kind == "column" else w


def run(loss: Any, y_true: Any, y_pred: Any, weight: Any, fused: bool) -> tuple[Any, Any]:
    """The loss (its fused or reference path) and the gradient of its sum."""
    p = y_pred.detach().clone().requires_grad_(True)
    if fused:
        with on_device():
            value = gpu.fused_call(loss, y_true, p, weight, None)
        assert value is not None, "the Triton path declined the call"
    else:
        with losskit.prefer_backend("reference"):
            value = loss(y_true, p, weight)
    (gradient,) = torch.autograd.grad(value.sum(), p)
    return value.detach(), gradient


def inputs(
    make: Make, dtype: Any, seed: int = 0, shape: tuple[int, int] = (ROWS, CLASSES)
) -> tuple[Any, Any]:
    g = torch.Generator().manual_seed(seed)
    y_true, y_pred = make(g, *shape)
    if y_true.is_floating_point():
        y_true = y_true.to(torch.float32)
    return y_true.to(DEVICE), y_pred.to(dtype).to(DEVICE)


def assert_matches(fused: tuple[Any, Any], reference: tuple[Any, Any], tol: float) -> None:
    for mine, theirs in zip(fused, reference, strict=True):
        assert mine.shape == theirs.shape
        assert mine.dtype == theirs.dtype
        scale = float(theirs.abs().max()) if theirs.numel() else 0.0
        torch.testing.assert_close(mine, theirs, rtol=tol, atol=tol * max(scale, 1e-3))


# --- values and gradients -------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("name", "factory", "make"), CASES, ids=IDS)
def test_matches_reference(name: str, factory: Any, make: Make, reduction: str) -> None:
    _check_against_reference(name, factory, make, reduction)


ONE_CHUNK_CASES = [c for c in CASES if c[0] in ("cce_logits", "scce_logits", "scce_ignore")]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    ("name", "factory", "make"), ONE_CHUNK_CASES, ids=[c[0] for c in ONE_CHUNK_CASES]
)
def test_rows_in_one_chunk_match_reference(
    name: str, factory: Any, make: Make, reduction: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Crossentropy from logits with every row in one chunk (read once, the
    gradient from the loaded values): every reduction and weight kind."""
    monkeypatch.setattr(gpu, "CLASS_BLOCK", 16)
    _check_against_reference(name, factory, make, reduction)


def _check_against_reference(name: str, factory: Any, make: Make, reduction: str) -> None:
    if name in OVERLAP and reduction != "sum_over_batch_size":
        pytest.skip("Dice and Tversky over all axes are one number: no reduction applies")
    if name == "scce_ignore" and reduction == "none":
        pytest.skip("ignore_class with reduction 'none' takes the reference")
    if name in POWER_VARIANTS and reduction in ("sum", "mean"):
        pytest.skip("the reductions run as for gamma = 2 (the same kernel but its power)")
    loss = factory(reduction=reduction)
    y_true, y_pred = inputs(make, torch.float32)
    kinds = ["none", "number", "0-d", "rows", "column"]
    if reduction in ("sum", "mean"):
        kinds = ["none", "rows"]  # weights enter as in sum_over_batch_size
    if name in OVERLAP:
        kinds = ["none"]
    for kind in kinds:
        weight = weights_of(kind)
        fused = run(loss, y_true, y_pred, weight, fused=True)
        reference = run(loss, y_true, y_pred, weight, fused=False)
        assert_matches(fused, reference, 2e-5)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    case=st.sampled_from(CASES),
    rows=st.integers(1, 9),
    classes=st.integers(2, 21),
    reduction=st.sampled_from(REDUCTIONS),
    weighted=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_random_shapes_match_reference(
    case: Any, rows: int, classes: int, reduction: str, weighted: bool, seed: int
) -> None:
    name, factory, make = case
    if name in OVERLAP:
        reduction, weighted = "sum_over_batch_size", False
    if name == "scce_ignore" and reduction == "none":
        reduction = "sum"
    loss = factory(reduction=reduction)
    y_true, y_pred = inputs(make, torch.float32, seed, (rows, classes))
    weight = torch.rand(rows, generator=torch.Generator().manual_seed(seed)) if weighted else None
    weight = None if weight is None else weight.to(DEVICE)
    fused = run(loss, y_true, y_pred, weight, fused=True)
    assert_matches(fused, run(loss, y_true, y_pred, weight, fused=False), 2e-5)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize(("name", "factory", "make"), CASES, ids=IDS)
def test_half_precision_inputs(name: str, factory: Any, make: Make, dtype: str) -> None:
    # The class computes in float32 (its dtype): so do the kernels, from inputs
    # read in their own dtype; only the stored gradient is rounded to it.
    loss = factory()
    y_true, y_pred = inputs(make, getattr(torch, dtype), seed=1)
    fused = run(loss, y_true, y_pred, weights_of("rows") if name not in OVERLAP else None, True)
    reference = run(
        loss, y_true, y_pred, weights_of("rows") if name not in OVERLAP else None, False
    )
    torch.testing.assert_close(fused[0], reference[0], rtol=2e-5, atol=2e-5)
    assert fused[1].dtype == getattr(torch, dtype)
    torch.testing.assert_close(fused[1].float(), reference[1].float(), rtol=1e-2, atol=1e-3)


@pytest.mark.parametrize(("name", "factory", "make"), CASES, ids=IDS)
def test_one_chunk_and_many_rows(
    name: str, factory: Any, make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Default block sizes (a row in one chunk) and a ragged row count."""
    monkeypatch.setattr(gpu, "ELEMENT_BLOCK", 4096)
    monkeypatch.setattr(gpu, "CLASS_BLOCK", 4096)
    monkeypatch.setattr(gpu, "SUM_BLOCK", 4096)
    loss = factory(reduction="sum")
    y_true, y_pred = inputs(make, torch.float32, seed=2)
    assert_matches(
        run(loss, y_true, y_pred, None, True), run(loss, y_true, y_pred, None, False), 2e-5
    )


ROW_CASES = ["cce_logits", "scce_logits", "cfocal", "cfocal_logits", "cfocal_logits_gamma", "gce"]


@pytest.mark.parametrize(
    ("name", "factory", "make"), [c for c in CASES if c[0] in ROW_CASES], ids=ROW_CASES
)
def test_long_rows_take_a_program_each(
    name: str, factory: Any, make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows longer than a block: one row per program, read in three chunks."""
    block = 8 if _smallest_tile() < 128 else 128  # see _smallest_tile
    monkeypatch.setattr(gpu, "ELEMENT_BLOCK", block)
    monkeypatch.setattr(gpu, "CLASS_BLOCK", block)
    loss = factory(reduction="none")
    y_true, y_pred = inputs(make, torch.float32, seed=11, shape=(3, 2 * block + 5))
    weight = torch.tensor([0.5, 1.0, 2.0], device=DEVICE)
    assert_matches(
        run(loss, y_true, y_pred, weight, True), run(loss, y_true, y_pred, weight, False), 2e-5
    )


@pytest.mark.parametrize(("name", "factory", "make"), CASES, ids=IDS)
def test_deterministic(name: str, factory: Any, make: Make) -> None:
    loss = factory()
    y_true, y_pred = inputs(make, torch.float32, seed=3)
    first = run(loss, y_true, y_pred, None, True)
    second = run(loss, y_true, y_pred, None, True)
    assert torch.equal(first[0], second[0])
    assert torch.equal(first[1], second[1])


def test_rows_of_one_feature_and_higher_rank() -> None:
    g = torch.Generator().manual_seed(4)
    for shape in [(37, 1), (3, 5, 7)]:
        y_true = torch.randn(*shape, generator=g).to(DEVICE)
        y_pred = torch.randn(*shape, generator=g).to(DEVICE)
        for reduction in ("sum", "none"):
            loss = losskit.LogCosh(reduction=reduction)
            assert_matches(
                run(loss, y_true, y_pred, None, True), run(loss, y_true, y_pred, None, False), 2e-5
            )


def test_generalized_crossentropy_labels_of_any_dtype_and_out_of_range() -> None:
    """As for the sparse crossentropy: a label out of range selects p = 0 (loss
    1 / q, no gradient); 3.7 is class 3."""
    _, y_pred = inputs(labels_probabilities, torch.float32, seed=9)
    labels = torch.tensor([0.0, 8.0, -1.0, 9.0, 3.7, 2.0], device=DEVICE)
    for reduction in ("sum", "none"):
        loss = losskit.CategoricalGeneralizedCrossEntropy(q=0.3, reduction=reduction)
        for y_true in (labels, labels.to(torch.int32), labels.reshape(-1, 1)):
            assert_matches(
                run(loss, y_true, y_pred, None, True), run(loss, y_true, y_pred, None, False), 2e-5
            )


def test_generalized_crossentropy_zero_probability_at_the_label() -> None:
    """p = 0 at a label: the derivative -p**q / p is not finite, so the call
    goes to the reference; p = 0 elsewhere in the row changes nothing."""
    y_true = torch.tensor([1, 0], device=DEVICE)
    y_pred = torch.tensor([[0.0, 0.5, 0.5], [0.3, 0.7, 0.0]], device=DEVICE)
    loss = losskit.CategoricalGeneralizedCrossEntropy()
    assert_matches(
        run(loss, y_true, y_pred, None, True), run(loss, y_true, y_pred, None, False), 2e-5
    )
    with on_device():
        p = y_pred.clone().requires_grad_(True)
        assert gpu.fused_call(loss, y_true.flip(0), p, None, None) is None


@pytest.mark.parametrize("from_logits", [True, False])
def test_labels_of_any_dtype_and_out_of_range(from_logits: bool) -> None:
    """Float, int32 and (N, 1) labels; labels outside [0, classes) give 0, as
    the reference does (Keras on JAX)."""
    make = labels_logits if from_logits else labels_probabilities
    _, y_pred = inputs(make, torch.float32, seed=9)
    labels = torch.tensor([0.0, 8.0, -1.0, 9.0, 3.7, 2.0], device=DEVICE)
    for ignore_class in (None, 3):
        loss = losskit.SparseCategoricalCrossentropy(
            from_logits=from_logits, ignore_class=ignore_class
        )
        for y_true in (labels, labels.to(torch.int32), labels.reshape(-1, 1)):
            assert_matches(
                run(loss, y_true, y_pred, None, True), run(loss, y_true, y_pred, None, False), 2e-5
            )


def test_integer_one_hot_targets() -> None:
    hot, y_pred = inputs(one_hot_scores, torch.float32, seed=10)
    for loss in (
        losskit.CategoricalCrossentropy(from_logits=True),
        losskit.CategoricalHinge(),
        losskit.CategoricalFocalCrossentropy(from_logits=True),
        losskit.BinaryFocalCrossentropy(from_logits=True),
    ):
        y_true = hot.to(torch.int64)
        assert_matches(
            run(loss, y_true, y_pred, None, True), run(loss, y_true, y_pred, None, False), 2e-5
        )


# --- edge values: the reference's inf/NaN pattern -----------------------------------

SMALL_EDGES = [0.0, 1e-38, -1e-38, 1e-7, -1e-7, 1.0, 1.0 - 1e-7, -1.0]
EXTREMES = [1e30, -1e30, 3e38, float("inf"), float("-inf"), float("nan")]


@pytest.mark.parametrize(("name", "factory", "make"), CASES, ids=IDS)
def test_edge_values(name: str, factory: Any, make: Make) -> None:
    """Zeros, tiny values, clip bounds: computed here, as the reference does.
    Huge, inf and NaN inputs: computed with the reference's inf/NaN pattern,
    or handed back to the reference (None)."""
    loss = factory()
    y_true, y_pred = inputs(make, torch.float32, seed=5)
    rng = np.random.default_rng(5)
    for values, must_run in ((SMALL_EDGES, True), (EXTREMES, False)):
        pred = y_pred.clone()
        flat = pred.view(-1)
        spots = rng.choice(flat.numel(), size=len(values), replace=False)
        flat[torch.as_tensor(spots)] = torch.tensor(values, device=DEVICE)
        p1 = pred.clone().requires_grad_(True)
        p2 = pred.clone().requires_grad_(True)
        with losskit.prefer_backend("reference"):
            v2 = loss(y_true, p2)
        (g2,) = torch.autograd.grad(v2, p2)
        with on_device():
            v1 = gpu.fused_call(loss, y_true, p1, None, None)
        if v1 is None:
            finite = bool(torch.isfinite(v2).all() and torch.isfinite(g2).all())
            handed_back_ok = not must_run or name in POWER_AT_ZERO
            assert handed_back_ok or not finite, "finite edge values were handed back"
            continue
        (g1,) = torch.autograd.grad(v1, p1)
        torch.testing.assert_close(v1, v2, rtol=1e-4, atol=1e-6, equal_nan=True)
        torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-6, equal_nan=True)


@pytest.mark.parametrize("class_block", [4, 16], ids=["chunked", "one-chunk"])
@pytest.mark.parametrize("offset", [1e6, 1e20])
def test_crossentropy_from_logits_far_from_zero(class_block: int, offset: float) -> None:
    """Soft-target crossentropy from logits near 1e6 (a float32 spacing of
    0.0625) and a row of equal logits at 1e20 (its loss is log C): written as
    sum(s) * (max + log total) - sum(s * x), the loss lost up to 0.03 near 1e6
    and all of log C at 1e20."""
    g = torch.Generator().manual_seed(3)
    y_true, logits = soft_logits(g)
    logits = (logits + offset).to(torch.float32).to(DEVICE)
    if offset > 1e10:
        logits[0] = offset
    y_true = y_true.to(torch.float32).to(DEVICE)
    loss = losskit.CategoricalCrossentropy(from_logits=True, reduction=None)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gpu, "CLASS_BLOCK", class_block)
        fused = run(loss, y_true, logits, None, fused=True)
    reference = run(loss, y_true, logits, None, fused=False)
    torch.testing.assert_close(fused[0], reference[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fused[1], reference[1], rtol=1e-5, atol=1e-6)


def test_non_finite_hands_back_to_reference() -> None:
    loss = losskit.MeanSquaredError()
    y_pred = torch.ones(4, 3, device=DEVICE)
    y_pred[1, 2] = float("inf")
    with on_device():
        assert gpu.fused_call(loss, torch.zeros_like(y_pred), y_pred, None, None) is None
        assert gpu.fused_call(loss, torch.zeros_like(y_pred), y_pred.abs(), None, None) is None


# --- autograd -------------------------------------------------------------------------


def test_upstream_gradient_scales_the_stored_one() -> None:
    # A loss that torch's own operations (losskit._torch_native, tried first on
    # small inputs) do not take, so that the loss object reaches the kernels.
    y_true, y_pred = inputs(binary_logits, torch.float32, seed=6)
    for reduction in ("sum_over_batch_size", "none"):
        loss = losskit.BinaryFocalCrossentropy(from_logits=True, reduction=reduction)
        upstream = torch.linspace(-2.0, 3.0, ROWS, device=DEVICE)
        if reduction != "none":
            upstream = torch.tensor(-2.5, device=DEVICE)
        grads = []
        for fused in (True, False):
            p = y_pred.clone().requires_grad_(True)
            with on_device() if fused else losskit.prefer_backend("reference"):
                value = loss(y_true, p)
            if fused:
                assert type(value.grad_fn).__name__ == "FusedLossBackward"
            value.backward(upstream)
            grads.append(p.grad)
        torch.testing.assert_close(grads[0], grads[1], rtol=2e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("programs", [1, 3, 10_000])
def test_scaling_strides_over_every_tile(
    programs: int, dtype: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backward scaling kernel's fixed grid strides over all tiles: fewer
    programs than tiles (one, three: an uneven share, and a partial last
    tile) scale every element once; a factor of 1 writes nothing."""
    monkeypatch.setattr(gpu, "SCALE_PROGRAMS", programs)
    gradient = torch.linspace(-3.0, 3.0, 1001, device=DEVICE).to(dtype)
    for factor in (0.5, 1.0, -2.0):
        scaled = gradient.clone()
        with on_device():
            gpu._scale_in_place(scaled, torch.tensor(factor, device=DEVICE))
        torch.testing.assert_close(scaled, (gradient.float() * factor).to(dtype), rtol=0, atol=0)


def test_upstream_gradient_of_one_leaves_the_stored_one() -> None:
    """``loss.backward()`` hands on the stored gradient as it is (the scaling
    kernel reads the upstream 1 on the device and writes nothing); any other
    upstream scales it."""
    y_true, y_pred = inputs(binary_logits, torch.float32, seed=6)
    loss = losskit.BinaryFocalCrossentropy(from_logits=True)
    grads = []
    for upstream in (None, torch.tensor(1.0, device=DEVICE), torch.tensor(0.5, device=DEVICE)):
        p = y_pred.clone().requires_grad_(True)
        with on_device():
            loss(y_true, p).backward(upstream)
        grads.append(p.grad)
    reference = y_pred.clone().requires_grad_(True)
    with losskit.prefer_backend("reference"):
        loss(y_true, reference).backward()
    torch.testing.assert_close(grads[0], reference.grad, rtol=2e-5, atol=1e-7)
    torch.testing.assert_close(grads[1], grads[0], rtol=0, atol=0)
    torch.testing.assert_close(grads[2], grads[0] * 0.5, rtol=0, atol=0)


def test_graph_capture_takes_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside a CUDA graph capture the per-call finiteness check (a read to
    the host) cannot run: the loss goes to the reference, with its value and
    gradient, instead of failing."""
    loss = losskit.BinaryFocalCrossentropy(from_logits=True)  # not one torch's own losses take
    y_true, y_pred = inputs(binary_logits, torch.float32, seed=3)
    with on_device():
        assert gpu.fused_call(loss, y_true, y_pred, None, None) is not None
        monkeypatch.setattr(gpu, "_capturing", lambda y_pred: True)
        assert gpu.fused_call(loss, y_true, y_pred, None, None) is None
        p = y_pred.clone().requires_grad_(True)
        value = loss(y_true, p)
    assert type(value.grad_fn).__name__ != "FusedLossBackward"
    with losskit.prefer_backend("reference"):
        torch.testing.assert_close(value, loss(y_true, y_pred), rtol=1e-6, atol=1e-7)


ASSUME_FINITE_CASES = ["mse", "huber", "bce_logits", "cce_logits", "scce_logits", "dice"]


@pytest.mark.parametrize(
    ("name", "factory", "make"),
    [c for c in CASES if c[0] in ASSUME_FINITE_CASES],
    ids=[c[0] for c in CASES if c[0] in ASSUME_FINITE_CASES],
)
def test_assume_finite_reads_nothing_back(
    name: str, factory: Any, make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under assume_finite no value is read back to the host (Tensor.item
    made to fail), a graph capture keeps the kernels, finite inputs give the
    checked call's numbers bit for bit, and a non-finite input gives a NaN
    loss instead of the reference's."""
    loss = factory()
    y_true, y_pred = inputs(make, torch.float32, seed=9)
    checked = run(loss, y_true, y_pred, None, True)

    def no_read(self: Any) -> Any:
        raise AssertionError("a value was read back to the host")

    with monkeypatch.context() as patched:
        patched.setattr(torch.Tensor, "item", no_read)
        with pytest.raises(AssertionError, match="read back"), on_device():
            gpu.fused_call(loss, y_true, y_pred, None, None)  # checked: it reads
        patched.setattr(gpu, "_capturing", lambda y_pred: True)
        with gpu.assume_finite():
            trusted = run(loss, y_true, y_pred, None, True)
    for mine, theirs in zip(trusted, checked, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=0)
    bad = y_pred.clone()
    bad.view(-1)[3] = float("inf")
    with gpu.assume_finite(), on_device():
        value = gpu.fused_call(loss, y_true, bad, None, None)
    assert value is not None
    assert bool(torch.isnan(value))


def test_double_backward_uses_the_reference() -> None:
    y_true, y_pred = inputs(soft_logits, torch.float32, seed=7)
    loss = losskit.CategoricalCrossentropy(from_logits=True)
    results = []
    for fused in (True, False):
        p = y_pred.clone().requires_grad_(True)
        with on_device() if fused else losskit.prefer_backend("reference"):
            value = loss(y_true, p)
        (first,) = torch.autograd.grad(value, p, create_graph=True)
        (second,) = torch.autograd.grad(first.pow(2).sum(), p)
        results.append(second)
    torch.testing.assert_close(results[0], results[1], rtol=1e-4, atol=1e-7)


def test_declines_what_it_does_not_cover() -> None:
    y_true, y_pred = inputs(regression, torch.float32)
    mse = losskit.MeanSquaredError()
    with on_device():
        assert gpu.fused_call(mse, y_true, y_pred, None, torch.ones(ROWS) > 0) is None
        assert gpu.fused_call(mse, y_true, y_pred.t(), None, None) is None  # not contiguous
        assert gpu.fused_call(mse, y_true[:, :1], y_pred, None, None) is None  # shapes
        assert (
            gpu.fused_call(losskit.MeanSquaredError(dtype="float64"), y_true, y_pred, None, None)
            is None
        )
        assert gpu.fused_call(mse, y_true[0], y_pred[0], None, None) is None  # rank 1
        cosine = losskit.CosineSimilarity(axis=0)
        assert gpu.fused_call(cosine, y_true, y_pred, None, None) is None
        sparse = losskit.SparseCategoricalCrossentropy(from_logits=True)
        assert gpu.fused_call(sparse, y_true, y_pred, None, None) is None  # float y_true shape
        per_class = losskit.CategoricalFocalCrossentropy(alpha=[0.5] * CLASSES)
        hot = torch.softmax(y_true, -1)
        assert gpu.fused_call(per_class, hot, y_pred.sigmoid(), None, None) is None
        one_class = losskit.CategoricalFocalCrossentropy(from_logits=True)
        assert gpu.fused_call(one_class, hot[:, :1], y_pred[:, :1], None, None) is None
        ctc = losskit.CTC()  # no kernel: the reference (CTC and Circle)
        logits = torch.randn(2, 5, 4, device=DEVICE)
        labels = torch.tensor([[1, 2], [3, 0]], device=DEVICE)
        assert gpu.fused_call(ctc, labels, logits, None, None) is None
        circle = losskit.Circle()
        assert gpu.fused_call(circle, torch.arange(ROWS, device=DEVICE), y_pred, None, None) is None
        with losskit.prefer_backend("reference"):
            assert gpu.fused_call(mse, y_true, y_pred, None, None) is None


def test_loss_objects_dispatch_here() -> None:
    """A plain loss call on a routed tensor runs the kernels (the only hook in
    losskit.kernels.fused_call), whatever its size, for a loss that torch's own
    operations (losskit._torch_native, tried first on small inputs) do not take."""
    y_true, y_pred = inputs(distributions, torch.float32)
    p = y_pred.clone().requires_grad_(True)
    with on_device():
        value = losskit.CategoricalFocalCrossentropy()(y_true, p)
    assert type(value.grad_fn).__name__ == "FusedLossBackward"


def test_small_tensors_take_torch_operations(monkeypatch: pytest.MonkeyPatch) -> None:
    """Below ``TRITON_MIN_ELEMENTS`` a loss that torch's operations lower
    takes them (the reference's values, no fused backward); from that size
    on, the kernels.  A loss without a lowering (categorical focal) and a
    call the lowering declines (``ignore_class``) take the kernels at any
    size, not the reference."""
    monkeypatch.setattr(kernels, "TRITON_MIN_ELEMENTS", ROWS * CLASSES + 1)

    def backward_of(loss: Any, make: Make, rows: int) -> str:
        y_true, y_pred = inputs(make, torch.float32, shape=(rows, CLASSES))
        p = y_pred.clone().requires_grad_(True)
        with on_device():
            value = loss(y_true, p)
        with losskit.prefer_backend("reference"):
            torch.testing.assert_close(value, loss(y_true, y_pred), rtol=1e-5, atol=1e-7)
        return type(value.grad_fn).__name__

    mse = losskit.MeanSquaredError()
    assert backward_of(mse, regression, ROWS) != "FusedLossBackward"
    assert backward_of(mse, regression, ROWS + 1) == "FusedLossBackward"
    focal = losskit.CategoricalFocalCrossentropy()
    assert backward_of(focal, distributions, ROWS) == "FusedLossBackward"
    ignoring = losskit.SparseCategoricalCrossentropy(from_logits=True, ignore_class=1)
    assert backward_of(ignoring, labels_logits, ROWS) == "FusedLossBackward"


def test_captured_calls_under_assume_finite_keep_the_kernels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Inside a CUDA graph capture (simulated) under ``assume_finite()`` a small
    call keeps the kernels, as that context promises; captured without it,
    the kernels decline (their check reads the host) and the lowering runs."""
    monkeypatch.setattr(kernels, "TRITON_MIN_ELEMENTS", 1 << 20)
    monkeypatch.setattr(gpu, "_capturing", lambda y_pred: True)
    loss = losskit.MeanSquaredError()
    y_true, y_pred = inputs(regression, torch.float32)
    for trusted, kept in ((True, True), (False, False)):
        p = y_pred.clone().requires_grad_(True)
        with on_device(), gpu.assume_finite() if trusted else contextlib.nullcontext():
            value = loss(y_true, p)
        assert (type(value.grad_fn).__name__ == "FusedLossBackward") is kept


# --- in-place crossentropy -----------------------------------------------------------


def _produced(logits: Any) -> tuple[Any, Any, Any]:
    """``hidden @ weight`` equal to ``logits``: a producer that saves only its inputs."""
    hidden = torch.eye(logits.shape[0], dtype=logits.dtype, device=DEVICE).requires_grad_(True)
    weight = logits.detach().clone().requires_grad_(True)
    return hidden, weight, hidden @ weight


@pytest.mark.parametrize(
    ("factory", "make"),
    [
        (
            lambda: losskit.SparseCategoricalCrossentropy(from_logits=True, ignore_class=3),
            labels_logits,
        ),
        (
            lambda: losskit.SparseCategoricalCrossentropy(from_logits=True, reduction="sum"),
            labels_logits,
        ),
        (
            lambda: losskit.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
            soft_logits,
        ),
    ],
)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("class_block", [4, 16], ids=["chunked", "one-chunk"])
def test_inplace_grad_matches_reference(
    factory: Any, make: Make, dtype: str, class_block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gradient in the logits' buffer, for rows read in chunks (two passes
    over the buffer) and for rows that fit one chunk (read once)."""
    monkeypatch.setattr(gpu, "CLASS_BLOCK", class_block)
    loss = factory()
    config = loss.get_config()
    y_true, logits = inputs(make, getattr(torch, dtype), seed=8)
    weight = weights_of("rows")
    _, w_in, produced = _produced(logits)
    buffer = produced.data_ptr()
    with on_device():
        value = gpu.cross_entropy_inplace_grad(loss, y_true, produced, weight)
    (value * 2.0).backward()
    _, w_ref, produced_ref = _produced(logits)
    with losskit.prefer_backend("reference"):
        reference = loss(y_true, produced_ref, weight)
    (reference * 2.0).backward()
    tol = 2e-5 if dtype == "float32" else 2e-2
    torch.testing.assert_close(value, reference, rtol=2e-5, atol=2e-5)
    torch.testing.assert_close(w_in.grad.float(), w_ref.grad.float(), rtol=tol, atol=tol * 1e-1)
    assert produced.data_ptr() == buffer  # the gradient lives in the logits' buffer
    assert loss.get_config() == config


def test_inplace_grad_refuses_logits_needed_elsewhere() -> None:
    y_true, logits = inputs(labels_logits, torch.float32)
    loss = losskit.SparseCategoricalCrossentropy(from_logits=True)
    with on_device():
        leaf = logits.clone().requires_grad_(True)
        with pytest.raises(ValueError, match="leaf tensor"):
            gpu.cross_entropy_inplace_grad(loss, y_true, leaf)
        source = logits.clone().requires_grad_(True)
        with pytest.raises(ValueError, match="saved them"):
            gpu.cross_entropy_inplace_grad(loss, y_true, torch.exp(source))
        wide = (source * 1.0).reshape(-1)
        with pytest.raises(ValueError, match="view"):
            gpu.cross_entropy_inplace_grad(loss, y_true, wide.view(ROWS, CLASSES))
        _, _, produced = _produced(logits)
        other_use = (produced * produced).sum()  # saves the logits for its backward
        value = gpu.cross_entropy_inplace_grad(loss, y_true, produced)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            (value + other_use).backward()
        with pytest.raises(TypeError, match="from_logits=True"):
            gpu.cross_entropy_inplace_grad(
                losskit.SparseCategoricalCrossentropy(), y_true, produced
            )


def test_inplace_grad_without_grad_writes_nothing() -> None:
    y_true, logits = inputs(labels_logits, torch.float32)
    loss = losskit.SparseCategoricalCrossentropy(from_logits=True)
    before = logits.clone()
    with on_device(), torch.no_grad():
        value = gpu.cross_entropy_inplace_grad(loss, y_true, logits)
    assert torch.equal(logits, before)
    with losskit.prefer_backend("reference"):
        torch.testing.assert_close(value, loss(y_true, logits), rtol=2e-5, atol=1e-6)


# --- the benchmark script ---------------------------------------------------------------


def _benchmark_script(name: str) -> Any:
    path = Path(__file__).parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"losskit_benchmark_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_benchmark_smoke(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, size in DEFAULT_BLOCKS.items():
        monkeypatch.setattr(gpu, name, size)  # what the script runs with
    module = _benchmark_script("gpu")
    with on_device():
        arguments = ["--cpu-smoke", "--out", str(tmp_path), "--repeats", "1", "--losses", "mse"]
        arguments += ["--no-compile", "--no-keras"] if CUDA else []
        report = module.main(arguments)
    written = list(tmp_path.glob("gpu_*.json"))
    assert len(written) == 1
    rows = report["results"]
    assert {r["provider"] for r in rows} >= {"losskit fused", "losskit reference", "copy"}
    assert all(r["ms"] > 0 for r in rows if r["ms"] is not None)
    if not CUDA:
        assert "skipped (no CUDA device)" in capsys.readouterr().out


def test_gpu_host_benchmark_smoke(tmp_path: Path) -> None:
    module = _benchmark_script("gpu_host")
    before = kernels.TRITON_MIN_ELEMENTS
    report = module.main(
        ["--out", str(tmp_path), "--calls", "3", "--elements", "2048", "--sweep", "1024"]
    )
    assert before == kernels.TRITON_MIN_ELEMENTS  # put back
    assert (tmp_path / "gpu_host.txt").read_text() == report + "\n"
    assert "| mse | 1024 |" in report
    assert "one Triton launch (scale_kernel)" in report
    assert "cProfile, cce_logits" in report


# --- the kernels compile for a real GPU (the interpreter does not compile) -----------

_COMPILE = """
import sys
import triton
from triton.backends.compiler import GPUTarget
from triton._C.libtriton import ir
from triton.backends.compiler import Language
from triton.compiler import ASTSource
from triton.compiler.compiler import make_backend
from losskit.kernels.triton import _kernels as k

ELEMENTWISE = dict(
    t_ptr="*fp32", p_ptr="*bf16", w_ptr="*fp32", w_stride="i32", scale_ptr="*fp32",
    flag_ptr="*fp32", grad_ptr="*bf16", rows_ptr="*fp32", partial_ptr="*fp32", n_rows="i32",
    n_features="i32", inv_features="fp32", k0="fp32", k1="fp32", k2="fp32", k3="fp32",
    k4="fp32", k5="fp32", k6="fp32",
)
ROWS = dict(
    t_ptr="*i64", p_ptr="*bf16", w_ptr="*fp32", w_stride="i32", scale_ptr="*fp32",
    grad_ptr="*bf16", rows_ptr="*fp32", partial_ptr="*fp32", n_rows="i32", n_classes="i32",
    ignore_class="i32", k0="fp32", k1="fp32", k2="fp32", k3="fp32", k4="fp32", k5="fp32",
    k6="fp32",
)
FLAGS = ("HAS_W", "WRITE_GRAD", "STORE_ROWS")
jobs = []
FOCAL = (k.BINARY_FOCAL, k.BINARY_FOCAL_LOGITS, k.CATEGORICAL_FOCAL, k.CATEGORICAL_FOCAL_LOGITS)
for loss in range(13):
    for square in (False, True)[: 2 if loss in FOCAL[:2] else 1]:
        for block_r, block_f in ((32, 128), (4096, 1)):  # rows x features, and flat
            constants = dict(LOSS=loss, SQUARE=square, HAS_W=True, WRITE_GRAD=True,
                             STORE_ROWS=False, BLOCK_R=block_r, BLOCK_F=block_f)
            jobs.append((k.elementwise_kernel, ELEMENTWISE, constants))
for loss in range(9):
    signature = dict(ROWS, t_ptr="*i64" if loss in (2, 3, 8) else "*fp32")
    for square in (False, True)[: 2 if loss in FOCAL[2:] else 1]:
        for block_r, block_c in ((32, 128), (1, 4096))[: 2 if loss in (2, 7) else 1]:
            for one_chunk in (False, True)[: 2 if loss in (0, 2) and block_r > 1 else 1]:
                constants = dict(LOSS=loss, SQUARE=square, HAS_W=True, HAS_IGNORE=loss in (2, 3),
                                 WRITE_GRAD=True, STORE_ROWS=True, BLOCK_R=block_r,
                                 BLOCK_C=block_c, ONE_CHUNK=one_chunk)
                jobs.append((k.row_kernel, signature, constants))
for fn, signature in (
    (k.sum_kernel, dict(x_ptr="*fp32", out_ptr="*fp32", n="i32")),
    (k.finish_kernel, dict(x_ptr="*fp32", n="i32", divisor_ptr="*fp32", out_ptr="*fp32")),
    (k.scale_kernel, dict(grad_ptr="*bf16", factor_ptr="*fp32", n="i32")),
    (k.overlap_kernel, dict(t_ptr="*fp32", p_ptr="*fp32", partial_ptr="*fp32", n="i32",
                            n_programs="i32")),
    (k.affine_kernel, dict(t_ptr="*fp32", coefficients_ptr="*fp32", grad_ptr="*fp32", n="i32")),
    (k.not_binary_kernel, dict(t_ptr="*fp32", partial_ptr="*fp32", n="i32")),
):
    jobs.append((fn, signature, dict(BLOCK=4096)))
# Every variant through Triton's front end and GPU passes (to TTGIR); a few,
# the most different ones, all the way to a cubin (LLVM and ptxas: slow).
target = GPUTarget("cuda", 90, 32)
backend = make_backend(target)
options = backend.parse_options({"enable_fp_fusion": False})
stages = {}
backend.add_stages(stages, options, Language.TRITON)
FULL = {(k.elementwise_kernel, 5), (k.row_kernel, 1), (k.row_kernel, 2), (k.scale_kernel, None)}
# the focal losses: one elementwise variant with exp and log, and the long-row one
FULL_FOCAL = {
    (k.elementwise_kernel, k.BINARY_FOCAL_LOGITS, False, 32),
    (k.row_kernel, k.CATEGORICAL_FOCAL_LOGITS, True, 1),
}
full = 0
for fn, signature, constants in jobs:
    signature = {**signature, **{name: "constexpr" for name in constants}}
    source = ASTSource(fn=fn, signature=signature, constexprs=constants)
    key = (fn, constants.get("LOSS"), constants.get("SQUARE"), constants.get("BLOCK_R"))
    if (fn, constants.get("LOSS")) in FULL or key in FULL_FOCAL:
        compiled = triton.compile(source, target=target, options={"enable_fp_fusion": False})
        assert compiled.asm["cubin"], fn
        full += 1
        continue
    context = ir.context()
    ir.load_dialects(context)
    backend.load_dialects(context)
    module = source.make_ir(target, options, backend.get_codegen_implementation(options),
                            backend.get_module_map(), context)
    metadata = {}
    for stage in ("ttir", "ttgir"):
        module = stages[stage](module, metadata)
    assert "tt.func" in str(module), fn
print("compiled", len(jobs), "to cubin", full)
"""


def test_kernels_compile_for_a_gpu() -> None:
    """Triton's compiler (not the interpreter) accepts every kernel variant,
    down to an sm_90 cubin: a GPU is not needed to compile."""
    import subprocess

    import triton

    if not triton.__version__.startswith("3.9."):
        pytest.skip("drives Triton 3.9's compiler stages (the test extra pins it)")

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run(
        [sys.executable, "-c", _COMPILE], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "compiled 52 to cubin 9" in done.stdout


def test_huber_errors_whose_square_overflows_float32() -> None:
    """q * q first, as the reference squares: (0.5 q) q was finite (2e38 for
    an error of 2e19), the reference's and Keras's inf."""
    y_pred = torch.zeros((ROWS, 1))
    y_pred[0] = 2e19  # one such error: its sum would not overflow float32 by itself
    y_pred = y_pred.to(DEVICE)
    loss = losskit.Huber(delta=1e30, reduction="sum")
    with on_device():
        value = gpu.fused_call(loss, torch.zeros_like(y_pred), y_pred, None, None)
    with losskit.prefer_backend("reference"):
        assert torch.isinf(loss(torch.zeros_like(y_pred), y_pred))
    assert value is None or torch.isinf(value)  # the check hands inf totals to the reference
    unreduced = losskit.Huber(delta=1e30, reduction="none")
    with on_device():
        values = gpu.fused_call(unreduced, torch.zeros_like(y_pred), y_pred, None, None)
    assert values is None or torch.isinf(values).all()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_huber_delta_beyond_the_float32_range(dtype: str) -> None:
    """A delta the kernels' float32 cannot hold was inf there, and the
    branch-free formula's inf * 0 NaN; Keras takes the quadratic side."""
    y_true, y_pred = inputs(regression, getattr(torch, dtype))
    loss = losskit.Huber(delta=1e300)
    fused = run(loss, y_true, y_pred, None, fused=True)
    reference = run(loss, y_true, y_pred, None, fused=False)
    torch.testing.assert_close(fused[0], reference[0], rtol=2e-5, atol=2e-5)
    torch.testing.assert_close(fused[1].float(), reference[1].float(), rtol=1e-2, atol=1e-3)
    error = y_pred.double() - y_true.double()
    torch.testing.assert_close(fused[0].double(), (0.5 * error**2).mean(), rtol=1e-5, atol=0.0)
