"""The losses against inputs an adversary would try (found at stop 20): a
reduction changed between eager JAX calls, logits far from zero, labels of
2^25 in binary focal crossentropy and a shape Keras rejects, each on the
fast paths (fused kernels from 2^15 elements) as on the reference."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import losskit
from losskit import kernels

jnp = pytest.importorskip("jax.numpy")
torch = pytest.importorskip("torch")

BIG = 2 * kernels.MIN_ELEMENTS  # elements: the fused kernels take the call


def reference(loss: losskit.Loss, *args: object) -> np.ndarray:
    with losskit.prefer_backend("reference"):
        return np.asarray(loss(*args))


def test_reduction_set_between_eager_jax_calls() -> None:
    y_true = jnp.array([[0.0, 1.0], [1.0, 1.0]])
    y_pred = jnp.array([[0.5, 0.5], [0.2, 0.9]])
    loss = losskit.MeanSquaredError()
    assert float(loss(y_true, y_pred)) == pytest.approx(0.2875)
    loss.reduction = "sum"  # the function compiled on the first call kept the old one
    assert float(loss(y_true, y_pred)) == pytest.approx(0.575)
    loss.reduction = None
    np.testing.assert_allclose(loss(y_true, y_pred), [0.25, 0.325], rtol=1e-6)
    huber = losskit.Huber()
    first = float(huber(y_true, 5 * y_pred))
    huber._fn_kwargs["delta"] = 0.1
    assert float(huber(y_true, 5 * y_pred)) != first


@pytest.mark.parametrize(
    "make",
    [
        lambda: losskit.CategoricalCrossentropy(from_logits=True, dtype="float64"),
        lambda: losskit.SparseCategoricalCrossentropy(from_logits=True, dtype="float64"),
        lambda: losskit.CategoricalFocalCrossentropy(from_logits=True, dtype="float64"),
    ],
)
def test_logits_far_from_zero(make: object) -> None:
    loss = make()  # type: ignore[operator]
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((BIG // 4, 4)) + 1e15  # a spacing of 0.125 there
    labels = np.arange(BIG // 4) % 4
    y_true = labels.astype("f8") if "sparse" in loss.name else np.eye(4)[labels]
    want = reference(loss, y_true, logits)
    # as x - (max + log sum): 1.7235 against 1.7244
    np.testing.assert_allclose(loss(y_true, logits), want, rtol=1e-12)
    tensor = torch.tensor(logits, requires_grad=True)
    loss(torch.tensor(y_true), tensor).backward()
    mirror = torch.tensor(logits, requires_grad=True)
    with losskit.prefer_backend("reference"):
        loss(torch.tensor(y_true), mirror).backward()
    np.testing.assert_allclose(tensor.grad, mirror.grad, rtol=1e-9, atol=1e-18)


def test_a_row_of_equal_huge_float32_logits() -> None:
    logits = np.zeros((BIG // 8, 8), "f4")
    logits[0] = 1e20  # its loss is log 8, which x - (max + log 8) rounded to 0
    y_true = np.eye(8, dtype="f4")[np.arange(BIG // 8) % 8]
    loss = losskit.CategoricalCrossentropy(from_logits=True)
    np.testing.assert_allclose(loss(y_true, logits), reference(loss, y_true, logits), rtol=1e-6)


@pytest.mark.parametrize("from_logits", [False, True])
def test_binary_focal_with_a_label_of_two_to_the_25(from_logits: bool) -> None:
    y_true = (np.arange(BIG) % 2).astype("f4").reshape(-1, 1)
    y_true[0, 0] = 2.0**25  # t + (1 - t) rounds to 0 in float32: the row was dropped
    y_pred = np.full((BIG, 1), 0.3, "f4")
    loss = losskit.BinaryFocalCrossentropy(from_logits=from_logits)
    np.testing.assert_allclose(loss(y_true, y_pred), reference(loss, y_true, y_pred), rtol=1e-5)


@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_sparse_labels_keras_rejects_at_any_size(library: str) -> None:
    y_true, y_pred = np.zeros((BIG // 2, 2), "f4"), np.full((BIG // 2, 2, 1), 0.7, "f4")
    if library == "torch":
        y_true, y_pred = torch.tensor(y_true), torch.tensor(y_pred)  # type: ignore[assignment]
    # Keras squeezes y_pred to (N, 2) and rejects the shapes; the kernels took them
    with pytest.raises(ValueError, match="must have the shape of `y_pred` without its class"):
        losskit.SparseCategoricalCrossentropy()(y_true, y_pred)


def _half_precision_cases() -> list[tuple[object, str]]:
    from tests.backends import BACKENDS

    return [(b, d) for b in BACKENDS for d in ("float16", "bfloat16") if d in b.dtypes]


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize(
    ("backend", "dtype"), _half_precision_cases(), ids=lambda v: getattr(v, "name", v)
)
def test_sparse_crossentropy_function_of_half_precision_is_float32(
    backend: object, dtype: str, from_logits: bool
) -> None:
    """Keras picks the label's log-probability with a float32 one-hot, so its
    function gives float32 losses for float16 and bfloat16 predictions (float64
    with JAX's x64 mode, which the oracle here runs in); losskit's gave the
    predictions' dtype.  The values are the half-precision ones, widened."""
    rng = np.random.default_rng(4)
    probabilities = rng.random((5, 3)) + 0.1
    labels = np.array([0, 2, 1, 1, 0])
    y_pred = backend.asarray(probabilities, dtype)  # type: ignore[attr-defined]
    result = losskit.sparse_categorical_crossentropy(
        backend.asarray(labels),
        y_pred,
        from_logits=from_logits,  # type: ignore[attr-defined]
    )
    assert "float32" in str(result.dtype)
    as_class = losskit.SparseCategoricalCrossentropy(
        from_logits=from_logits, dtype=dtype, reduction=None
    )
    labels_array = backend.asarray(labels)  # type: ignore[attr-defined]
    widened = backend.to_numpy(as_class(labels_array, y_pred))  # type: ignore[attr-defined]
    tolerance = 2e-2 if dtype == "bfloat16" else 0  # XLA may fuse bfloat16 differently
    np.testing.assert_allclose(
        backend.to_numpy(result),  # type: ignore[attr-defined]
        widened.astype("f4"),
        rtol=tolerance,
    )


def test_sparse_crossentropy_class_keeps_numpy_bfloat16() -> None:
    """The NumPy fast path wrote labels outside the classes as a Python -0.0,
    which promoted ml_dtypes' bfloat16 to float64; the reference keeps it."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    y_pred = np.array([[0.2, 0.5, 0.3], [0.1, 0.1, 0.8]], dtype=ml_dtypes.bfloat16)
    loss = losskit.SparseCategoricalCrossentropy(dtype="bfloat16", reduction=None)
    result = loss(np.array([1, 2]), y_pred)
    assert result.dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(result, reference(loss, np.array([1, 2]), y_pred))


@pytest.mark.parametrize(
    "make", [losskit.MeanAbsoluteError, losskit.MeanSquaredError, losskit.LogCosh]
)
def test_torch_func_over_labels_and_weights_of_a_large_call(make: object) -> None:
    """``torch.func.grad`` over ``y_true`` or the weights, with ``y_pred`` a
    plain tensor the transform captured: the fused kernels read that tensor
    through NumPy, which fails inside a transform ("Cannot access data
    pointer"); they now step aside, and the gradients are the reference's."""
    func = pytest.importorskip("torch.func")
    loss = make()  # type: ignore[operator]
    rows = 1 << 15  # 2^19 elements: beyond torch's own MSE too
    g = torch.Generator().manual_seed(0)
    t, p, w = torch.rand(rows, 16, generator=g), torch.rand(rows, 16, generator=g), torch.rand(rows)
    by_labels = func.grad(lambda y: loss(y, p))(t)
    by_weights = func.grad(lambda s: loss(t, p, sample_weight=s))(w)
    with losskit.prefer_backend("reference"):
        want_labels = func.grad(lambda y: loss(y, p))(t)
        want_weights = func.grad(lambda s: loss(t, p, sample_weight=s))(w)
    torch.testing.assert_close(by_labels, want_labels)
    torch.testing.assert_close(by_weights, want_weights)


def test_eager_jax_calls_keep_the_references_nan_and_inf() -> None:
    """The cached jit is left out where XLA's compiled code differs: a mask
    (a masked-out inf was 0, the reference's inf * 0 is NaN), bfloat16 (a NaN
    probability gave a finite loss at 8192 rows) and a preference for the
    reference (which did not reach JAX)."""
    from losskit import losses

    y_true = jnp.asarray([[0.0, 0.5], [1.0, 1.0], [1.0, 0.5]])
    y_pred = jnp.asarray([[np.inf, 0.5], [1.0, 2.0], [2.0, 0.5]])
    mask = jnp.asarray([False, True, True])
    loss = losskit.MeanAbsoluteError(reduction="sum")
    assert np.isnan(loss(y_true, y_pred, mask=mask))
    probabilities = np.full((8192, 8), 0.125)
    probabilities[0, 3] = np.nan
    crossentropy = losskit.CategoricalCrossentropy(dtype="bfloat16")
    labels = jnp.asarray(np.tile(np.eye(8)[3], (8192, 1)), "bfloat16")
    assert np.isnan(float(crossentropy(labels, jnp.asarray(probabilities, "bfloat16"))))
    unmasked = losskit.MeanSquaredError()
    with losskit.prefer_backend("reference"):
        unmasked(y_true, y_pred)
    assert unmasked not in losses._JAX_COMPILED


def test_a_long_alpha_changed_in_place_between_eager_jax_calls() -> None:
    """The compiled function was keyed by the attributes' repr, which elides
    the middle of an array longer than 1000: an alpha of 2000 classes changed
    there kept the old value on JAX (1.8865 against 5.5858)."""
    classes = 2000
    rng = np.random.default_rng(0)
    y_true = np.eye(classes, dtype="f4")[rng.integers(0, classes, 4)]
    y_pred = rng.uniform(0.1, 1, (4, classes)).astype("f4")
    y_pred /= y_pred.sum(-1, keepdims=True)
    alpha = np.full(classes, 0.25)
    loss = losskit.CategoricalFocalCrossentropy(alpha=alpha)
    loss(jnp.asarray(y_true), jnp.asarray(y_pred))
    alpha[500:1500] = 0.9
    np.testing.assert_allclose(
        loss(jnp.asarray(y_true), jnp.asarray(y_pred)), reference(loss, y_true, y_pred), rtol=1e-6
    )


def test_arguments_changed_every_eager_jax_call() -> None:
    """A ``delta`` schedule compiled a new function per value and kept them
    all; past a few states the calls run eagerly, with the same values."""
    from losskit import losses

    y_true = jnp.asarray(np.linspace(-3.0, 3.0, 12).reshape(4, 3))
    y_pred = jnp.zeros((4, 3))
    loss = losskit.Huber()
    for step in range(3 * losses._JAX_STATES):
        loss._fn_kwargs["delta"] = 0.1 + step / 10
        np.testing.assert_allclose(
            loss(y_true, y_pred), reference(loss, np.asarray(y_true), np.zeros((4, 3))), rtol=1e-6
        )
    assert len(losses._JAX_COMPILED[loss]) == losses._JAX_STATES


# -- Huber with a delta the dtype cannot hold, or one much larger than the errors --


def _keras_huber(delta: float, dtype: str, y_true: np.ndarray, y_pred: np.ndarray) -> tuple:
    """Keras's value and gradient (with respect to y_pred) of its Huber class."""
    import jax
    import keras

    loss = keras.losses.Huber(delta=delta, dtype=dtype)
    with warnings.catch_warnings():  # Keras casts delta to the dtype: inf
        warnings.filterwarnings("ignore", "overflow encountered in cast", RuntimeWarning)
        value, gradient = jax.value_and_grad(lambda p: loss(jnp.asarray(y_true), p))(
            jnp.asarray(y_pred)
        )
    return np.asarray(value), np.asarray(gradient)


@pytest.mark.parametrize("library", ["numpy", "torch", "jax"])
@pytest.mark.parametrize("rows", [3, BIG // 4])
@pytest.mark.parametrize(
    ("delta", "dtype"), [(1e300, "float32"), (1e39, "float32"), (1e8, "float32"), (1e5, "float16")]
)
def test_huber_delta_much_larger_than_the_errors(
    library: str, rows: int, delta: float, dtype: str
) -> None:
    """A delta the dtype cannot hold became inf, and the branch-free formula
    NaN (Keras: the quadratic side); a delta of 10^8 in float32 cancelled the
    reference's gradient to 0.  (Keras's gradient is NaN where delta is inf
    in the dtype, the side not taken being inf - inf; losskit's is the
    quadratic side's, e / size: a documented difference.)"""
    rng = np.random.default_rng(0)
    y_true = rng.normal(size=(rows, 4)).astype(dtype)
    y_pred = rng.normal(size=(rows, 4)).astype(dtype)
    want, want_gradient = _keras_huber(delta, dtype, y_true, y_pred)
    if delta > float(np.finfo(dtype).max):
        assert np.isnan(want_gradient).all()
        want_gradient = (y_pred.astype("f8") - y_true.astype("f8")) / y_pred.size
    loss = losskit.Huber(delta=delta, dtype=dtype)
    tolerance = 2e-3 if dtype == "float16" else 2e-6
    if library == "numpy":
        np.testing.assert_allclose(loss(y_true, y_pred), want, rtol=tolerance)
        return
    if library == "jax":
        import jax

        value, gradient = jax.value_and_grad(lambda p: loss(jnp.asarray(y_true), p))(
            jnp.asarray(y_pred)
        )
    else:
        tensor = torch.tensor(y_pred, requires_grad=True)
        value = loss(torch.tensor(y_true), tensor)
        value.backward()
        gradient, value = tensor.grad, value.detach()
    np.testing.assert_allclose(np.asarray(value, dtype="f8"), want, rtol=tolerance)
    np.testing.assert_allclose(
        np.asarray(gradient, dtype="f8"), want_gradient, rtol=tolerance, atol=tolerance / rows
    )


@pytest.mark.parametrize("library", ["numpy", "torch", "jax"])
@pytest.mark.parametrize("rows", [3, BIG])
@pytest.mark.parametrize("reduction", ["none", "sum_over_batch_size"])
@pytest.mark.parametrize(
    ("low", "high", "delta", "dtype"),
    [
        (1.9e19, 2.5e19, 1e30, "float32"),
        (260.0, 300.0, 1e4, "float16"),
    ],
)
def test_huber_errors_whose_square_overflows(
    library: str, rows: int, reduction: str, low: float, high: float, delta: float, dtype: str
) -> None:
    """The square of an error within delta overflows the dtype: inf, as in
    Keras and the reference.  The fused kernels took 0.5 q q in float64 and
    torch's huber_loss (0.5 q) q: both finite (2e38 for 2e19 in float32).
    (float16 stays below 65504 rows, where Keras's count is inf and its mean
    NaN: losskit sums and counts float16 in float32, README.)"""
    if dtype == "float16":
        rows = min(rows, 8192)
    y_pred = np.linspace(low, high, rows, dtype=dtype).reshape(-1, 1)
    y_true = np.zeros_like(y_pred)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "overflow encountered", RuntimeWarning)
        want, _ = _keras_huber(delta, dtype, y_true, y_pred)
        assert np.isinf(want).all()
        loss = losskit.Huber(delta=delta, reduction=reduction, dtype=dtype)
        if library == "numpy":
            value = loss(y_true, y_pred)
        elif library == "torch":
            value = loss(torch.tensor(y_true), torch.tensor(y_pred)).numpy()
        else:
            value = loss(jnp.asarray(y_true), jnp.asarray(y_pred))
    assert np.asarray(value).shape == ((rows,) if reduction == "none" else ())
    assert np.isposinf(np.asarray(value)).all()


# -- empty batches and empty class axes ------------------------------------------------


def _as(library: str, array: np.ndarray) -> object:
    return {"numpy": np.asarray, "torch": torch.tensor, "jax": jnp.asarray}[library](array)


@pytest.mark.parametrize("library", ["numpy", "torch", "jax"])
@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", None])
def test_circle_of_an_empty_batch_is_an_empty_loss(library: str, reduction: str | None) -> None:
    """Keras returns the loss of shape (0,) as it is; losskit failed inside the
    array library (the maximum over no references)."""
    labels, embeddings = np.zeros((0,), "int64"), np.zeros((0, 4), "float32")
    loss = losskit.Circle(reduction=reduction)(_as(library, labels), _as(library, embeddings))
    assert tuple(loss.shape) == (0,)
    assert np.asarray(loss).dtype == np.float32


@pytest.mark.parametrize("library", ["numpy", "torch", "jax"])
@pytest.mark.parametrize(
    "make",
    [
        lambda: losskit.CategoricalCrossentropy(from_logits=True),
        lambda: losskit.CategoricalCrossentropy(label_smoothing=0.1),
        lambda: losskit.CategoricalFocalCrossentropy(from_logits=True),
        lambda: losskit.CategoricalFocalCrossentropy(label_smoothing=0.1),
        lambda: losskit.SparseCategoricalCrossentropy(from_logits=True),
    ],
)
def test_crossentropies_of_no_classes_are_zero(library: str, make: object) -> None:
    """Keras gives 0; losskit raised inside the array library (the maximum of
    the logits) or a bare ZeroDivisionError (label smoothing)."""
    loss = make()  # type: ignore[operator]
    y_pred = np.zeros((2, 0), "float32")
    y_true = np.zeros(2, "int64") if "sparse" in loss.name else y_pred
    assert float(loss(_as(library, y_true), _as(library, y_pred))) == 0.0
    loss.reduction = None
    assert tuple(loss(_as(library, y_true), _as(library, y_pred)).shape) == (2,)


def test_numpy_integers_where_keras_takes_an_int() -> None:
    """num_classes=y.max() + 1 and axis=np.int64(-1) were refused (Keras takes
    them); configs hold Python ints, so they stay JSON."""
    import json

    labels = np.array([0, 2, 1])
    one_hot = losskit.to_categorical(labels, num_classes=labels.max() + 1)
    np.testing.assert_array_equal(one_hot, np.eye(3)[labels])
    y_true, y_pred = np.eye(3, dtype="float32"), np.full((3, 3), 1 / 3, "float32")
    for cls in (
        losskit.CategoricalCrossentropy,
        losskit.BinaryCrossentropy,
        losskit.SparseCategoricalCrossentropy,
        losskit.CategoricalFocalCrossentropy,
        losskit.BinaryFocalCrossentropy,
        losskit.CosineSimilarity,
        losskit.Dice,
        losskit.Tversky,
    ):
        config = cls(axis=np.int64(-1)).get_config()
        assert type(config["axis"]) is int
        json.dumps(config)
    assert losskit.Dice(axis=[np.int32(1)]).get_config()["axis"] == [1]
    np.testing.assert_allclose(
        losskit.categorical_crossentropy(y_true, y_pred, axis=np.int32(-1)), np.log(3.0), rtol=1e-6
    )
    np.testing.assert_allclose(
        losskit.cosine_similarity(y_true, y_pred, axis=np.int64(0)), -1 / np.sqrt(3), rtol=1e-6
    )


def test_huber_delta_beyond_float32_on_torch_keeps_infinite_errors_infinite() -> None:
    """torch's own huber_loss (the lowering) got the delta as given: an
    infinite error gave NaN there, inf on the reference and in Keras."""
    y_true = torch.zeros(4, 3)
    y_pred = torch.tensor([[float("inf"), 1.0, 2.0]] * 4)
    loss = losskit.Huber(delta=1e300)
    assert float(loss(y_true, y_pred)) == float("inf")
    assert float(reference(loss, y_true, y_pred)) == float("inf")


def test_circle_of_an_empty_torch_batch_keeps_the_graph() -> None:
    embeddings = torch.zeros((0, 4), requires_grad=True)
    loss = losskit.Circle()(torch.zeros(0, dtype=torch.int64), embeddings)
    loss.sum().backward()
    assert embeddings.grad is not None
    assert tuple(embeddings.grad.shape) == (0, 4)


def test_numpy_integer_ignore_class_is_stored_as_an_int() -> None:
    from losskit.streaming import LossAccumulator

    config = losskit.SparseCategoricalCrossentropy(ignore_class=np.int64(0)).get_config()
    assert type(config["ignore_class"]) is int
    plain = LossAccumulator(losskit.SparseCategoricalCrossentropy(ignore_class=0))
    plain.merge(LossAccumulator(losskit.SparseCategoricalCrossentropy(ignore_class=np.int64(0))))


# -- mixed libraries, Dask with unknown chunk sizes, array-api-strict ----------------


@pytest.mark.parametrize("library", ["numpy", "torch"])
@pytest.mark.parametrize(
    "make", [losskit.SparseCategoricalCrossentropy, losskit.CategoricalGeneralizedCrossEntropy]
)
def test_float16_labels_on_the_fused_path(library: str, make: object) -> None:
    """Numba has no float16: such labels raised NotImplementedError from inside
    it from 2^15 elements on (small inputs and int labels were right)."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, BIG // 4)
    y_pred = rng.random((BIG // 4, 4)).astype("float32")
    loss = make()  # type: ignore[operator]
    want = float(loss(labels, y_pred))
    convert = torch.from_numpy if library == "torch" else np.asarray
    got = float(loss(convert(labels.astype(np.float16)), convert(y_pred)))
    assert got == pytest.approx(want, rel=1e-6)


def test_boolean_mask_with_a_loss_mask_on_array_api_strict() -> None:
    """`mask != 0` is not defined for booleans by the standard: a boolean mask
    with ignore_class raised a TypeError on array-api-strict."""
    xps = pytest.importorskip("array_api_strict")
    y_pred = [[0.5, 0.25, 0.25]] * 3
    loss = losskit.SparseCategoricalCrossentropy(ignore_class=2)
    want = float(loss(np.array([0, 1, 2]), np.array(y_pred), mask=np.array([True, True, False])))
    got = loss(xps.asarray([0, 1, 2]), xps.asarray(y_pred), mask=xps.asarray([True, True, False]))
    assert float(got) == pytest.approx(want)


def test_dask_batches_of_unknown_chunk_sizes() -> None:
    """The streaming accumulators raised 'cannot convert float NaN to integer';
    Circle and CTC failed inside Dask's graph building."""
    da = pytest.importorskip("dask.array")
    from losskit.streaming import LossAccumulator

    values = np.array([[1.0, 2.0], [3.0, 4.0], [-1.0, 0.0]])
    x = da.from_array(values, chunks=2)
    kept = x[x[:, 0] > 0]
    accumulator = LossAccumulator("mse")
    accumulator.update(kept * 0, kept)
    assert accumulator.result() == pytest.approx(7.5)
    labels = da.from_array(np.arange(3), chunks=2)[x[:, 0] > 0]
    with pytest.raises(ValueError, match=r"circle: `y_true` has dimensions of unknown size"):
        losskit.Circle()(labels, x)
    with pytest.raises(ValueError, match=r"compute_chunk_sizes"):
        losskit.CTC()(
            da.ones((3, 2), dtype=int, chunks=2), da.ones((3, 5, 4), chunks=2)[x[:, 0] > 0]
        )


def test_dask_labels_and_weights_with_torch_predictions() -> None:
    """A Dask y_true or sample_weight with a torch y_pred was refused with
    'invalid DLPack capsule'; with NumPy, JAX or array-api-strict predictions
    it is computed and taken, and now with torch too."""
    da = pytest.importorskip("dask.array")
    y_true = da.from_array(np.eye(2), chunks=1)
    got = losskit.mean_squared_error(y_true, torch.zeros(2, 2, dtype=torch.float64))
    assert isinstance(got, torch.Tensor)
    np.testing.assert_allclose(got.numpy(), [0.5, 0.5])
    weights = da.from_array(np.array([1.0, 0.0]), chunks=1)
    got = losskit.MeanSquaredError()(torch.ones(2, 2), torch.zeros(2, 2), sample_weight=weights)
    assert float(got) == pytest.approx(0.5)


@pytest.mark.parametrize("rows", [5, BIG // 8, (1 << 19) // 8])
def test_huber_hessian_vector_product_forward_over_reverse_on_torch(rows: int) -> None:
    """torch's huber_loss (the lowering) has no forward-mode derivative of its
    backward: jvp over grad raised NotImplementedError in PyTorch at every size."""
    from torch import func

    generator = torch.Generator().manual_seed(0)
    y_true, y_pred, vector = (
        torch.randn(rows, 8, dtype=torch.float64, generator=generator) for _ in range(3)
    )
    loss = losskit.Huber(delta=0.5, dtype="float64")

    def product() -> object:
        gradient = func.grad(lambda p: loss(y_true, p))
        return func.jvp(gradient, (y_pred,), (vector,))[1]

    got = product()
    with losskit.prefer_backend("reference"):
        want = product()
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0.0)
    # the second derivative of the mean: 1 / size inside delta, 0 outside
    inside = ((y_pred - y_true).abs() <= 0.5).double()
    torch.testing.assert_close(got, vector * inside / y_pred.numel(), rtol=1e-12, atol=1e-15)


# -- float16: sums that are divided or logged, and normalised vectors -------------------


@pytest.mark.parametrize("library", ["numpy", "torch", "jax"])
@pytest.mark.parametrize("name", ["Dice", "Tversky"])
def test_float16_overlap_of_a_large_mask(library: str, name: str) -> None:
    """Sums past 65504 were inf before the division: NaN (Keras: NaN too)."""
    rng = np.random.default_rng(0)
    y_true = (rng.uniform(size=(512, 512)) < 0.5).astype("float16")
    y_pred = rng.uniform(size=(512, 512)).astype("float16")
    exact = float(getattr(losskit, name)(dtype="float64")(y_true.astype("f8"), y_pred.astype("f8")))
    convert = {"numpy": np.asarray, "torch": torch.tensor, "jax": jnp.asarray}[library]
    got = getattr(losskit, name)(dtype="float16")(convert(y_true), convert(y_pred))
    assert str(got.dtype).endswith("float16")
    assert float(got) == pytest.approx(exact, rel=2e-3)


def test_float16_dice_gradient_on_jax() -> None:
    """JAX's derivative of the division squares the denominator: past a sum
    of 256 it overflowed float16, and every y_true = 0 pixel got 0."""
    import jax

    rng = np.random.default_rng(0)
    y_true = (rng.uniform(size=(64, 64)) < 0.5).astype("float16")
    y_pred = rng.uniform(size=(64, 64)).astype("float16")

    def gradient(dtype: str) -> np.ndarray:
        loss = losskit.Dice(dtype=dtype)
        found = jax.grad(lambda p: loss(jnp.asarray(y_true, dtype), p))(jnp.asarray(y_pred, dtype))
        return np.asarray(found, dtype="f8")

    exact = gradient("float64")
    np.testing.assert_allclose(gradient("float16"), exact, rtol=5e-3, atol=1e-3 * abs(exact).max())


@pytest.mark.parametrize("library", ["torch", "jax"])
def test_float16_crossentropy_over_a_large_vocabulary(library: str) -> None:
    """The softmax's normaliser, a sum of 10^5 exponentials, was inf in float16."""
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=0.1, size=(4, 100_000)).astype("float16")
    labels = np.array([1, 2, 3, 4])
    loss = losskit.SparseCategoricalCrossentropy(from_logits=True, dtype="float16")
    exact = losskit.SparseCategoricalCrossentropy(from_logits=True, dtype="float64")(
        labels, logits.astype("f8")
    )
    convert = {"torch": torch.tensor, "jax": jnp.asarray}[library]
    assert float(loss(convert(labels), convert(logits))) == pytest.approx(float(exact), rel=2e-3)


@pytest.mark.parametrize("library", ["numpy", "torch", "jax"])
def test_float16_cosine_similarity_of_a_zero_vector(library: str) -> None:
    """eps² is 0 in float16 and 1 / eps out of its range: the value was NaN."""
    y_true = np.array([[1.0, 2.0, 3.0], [1.0, 0.0, 1.0]], dtype="float16")
    y_pred = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 0.0]], dtype="float16")
    convert = {"numpy": np.asarray, "torch": torch.tensor, "jax": jnp.asarray}[library]
    loss = losskit.CosineSimilarity(reduction=None, dtype="float16")
    got = loss(convert(y_true), convert(y_pred))
    np.testing.assert_allclose(np.asarray(got, dtype="f8"), [0.0, -0.5], atol=1e-3)
