"""CTC and Circle: the losses whose inputs are not a same-shape pair.

They run the checks the generic suite runs on ``CASES`` (Keras 3 on JAX, x64,
as the oracle for values, gradients, every reduction, sample-weight kind and
dtype; NumPy, torch, JAX and array-api-strict; ``jax.jit``/``grad``/``vmap``;
``torch.compile``; configs), on ``STRUCTURED_CASES``, plus CTC against
``torch.nn.functional.ctc_loss`` and optax.
"""

from __future__ import annotations

from typing import Any

import hypothesis
import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import losskit
from tests.backends import JAX, NUMPY, STRICT, TORCH, Backend
from tests.cases import STRUCTURED_CASES, Case, case_inputs, keras_reduce
from tests.cases import keras_class_gradient as eager_keras_gradient
from tests.cases import keras_class_value as eager_keras_value

REDUCTIONS = ["sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None]
TOLERANCE = {"float64": (1e-10, 1e-12), "float32": (2e-5, 1e-5)}
LOW_PRECISION_TOLERANCE = {"float16": 2e-2, "bfloat16": 5e-2}
CTC_CASE, CIRCLE_CASE = STRUCTURED_CASES[0], STRUCTURED_CASES[1]


# Keras's eager CTC retraces its lax.scan on every call (0.5 s); under jax.jit it
# is traced once per shape.  Its value has no Keras mask, so jit changes nothing.
_KERAS_CTC: dict[tuple[Any, ...], Any] = {}


def _jax(x: Any) -> Any:
    return None if x is None else jnp.asarray(x)


def keras_class_value(
    case: Case,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    sample_weight: Any = None,
    reduction: str | None = "sum_over_batch_size",
    dtype: str = "float64",
) -> np.ndarray:
    """The Keras class's value (the oracle of tests/cases.py, jitted for CTC)."""
    if case.loss != "CTC":
        return eager_keras_value(case, y_true, y_pred, sample_weight, reduction, dtype)
    key = ("value", reduction, dtype)
    if key not in _KERAS_CTC:
        loss = case.keras_loss(reduction=reduction, dtype=dtype)
        _KERAS_CTC[key] = jax.jit(lambda t, p, w: loss(t, p, sample_weight=w))
    return np.asarray(_KERAS_CTC[key](_jax(y_true), _jax(y_pred), _jax(sample_weight)))


def keras_class_gradient(
    case: Case,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    sample_weight: Any = None,
    reduction: str = "sum_over_batch_size",
) -> np.ndarray:
    """The gradient of the Keras class's float64 value with respect to y_pred."""
    if case.loss != "CTC":
        return eager_keras_gradient(case, y_true, y_pred, sample_weight, reduction)
    key = ("gradient", reduction)
    if key not in _KERAS_CTC:
        loss = case.keras_loss(reduction=reduction, dtype="float64")
        _KERAS_CTC[key] = jax.jit(jax.grad(lambda p, t, w: loss(t, p, sample_weight=w)))
    gradient = _KERAS_CTC[key](_jax(y_pred), _jax(y_true), _jax(sample_weight))
    return np.asarray(gradient)


def inputs(case: Case, seed: int) -> tuple[np.ndarray, np.ndarray]:
    assert case.shape is not None
    y_true, y_pred = case_inputs(case, case.shape, seed)
    if case.loss == "Circle":
        y_true[-1] = 99.0  # a sample without positives: loss 0, left out of the mean
    return y_true, y_pred


def weights(batch: int) -> dict[str, Any]:
    rng = np.random.default_rng(3)
    return {
        "none": None,
        "scalar": 2.5,
        "per_sample": rng.uniform(0.0, 2.0, size=(batch,)),
        "per_sample_trailing_1": rng.uniform(0.0, 2.0, size=(batch, 1)),
        "zeros": np.zeros(batch),
    }


def close(actual: Any, expected: Any, dtype: str) -> None:
    rtol, atol = TOLERANCE[dtype]
    assert np.shape(actual) == np.shape(expected)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


# --- values ----------------------------------------------------------------


@pytest.mark.parametrize("case", STRUCTURED_CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_class_matches_keras_for_every_reduction_and_weight(
    case: Case, reduction: str | None
) -> None:
    y_true, y_pred = inputs(case, seed=1)
    for dtype in ("float64", "float32"):
        loss = case.losskit_loss(reduction=reduction, dtype=dtype)
        # CTC has no Keras mask: its class is Keras's reduction of its values
        values = keras_class_value(case, y_true, y_pred, None, None, dtype)
        for kind, weight in weights(y_pred.shape[0]).items():
            if case.loss == "CTC":
                expected = keras_reduce(values, weight, None, reduction)
            else:
                expected = keras_class_value(case, y_true, y_pred, weight, reduction, dtype)
            result = loss(y_true, y_pred.astype(dtype), weight)
            assert str(result.dtype) == dtype, kind
            try:
                close(result, expected, dtype)
            except AssertionError as error:
                raise AssertionError(f"{dtype}, sample weight {kind}: {error}") from None


@pytest.mark.parametrize("backend", [NUMPY, TORCH, JAX, STRICT], ids=lambda b: b.name)
@pytest.mark.parametrize("case", STRUCTURED_CASES, ids=lambda c: c.id)
def test_every_library_and_dtype(case: Case, backend: Backend) -> None:
    y_true, y_pred = inputs(case, seed=2)
    weight = weights(y_pred.shape[0])["per_sample"]
    expected = keras_class_value(case, y_true, y_pred, weight)
    for dtype in backend.dtypes:
        loss = case.losskit_loss(dtype=dtype)
        p = backend.asarray(y_pred, dtype)
        result = loss(backend.asarray(y_true), p, backend.asarray(weight))
        assert result.dtype == p.dtype, dtype
        tolerance = LOW_PRECISION_TOLERANCE.get(dtype)
        if tolerance is None:
            close(
                backend.to_numpy(result),
                keras_class_value(case, y_true, y_pred, weight, dtype=dtype),
                dtype,
            )
        else:
            np.testing.assert_allclose(backend.to_numpy(result), expected, rtol=tolerance)


@pytest.mark.parametrize("case", STRUCTURED_CASES, ids=lambda c: c.id)
def test_function_matches_keras(case: Case) -> None:
    y_true, y_pred = inputs(case, seed=4)
    for dtype in ("float16", "float32", "float64"):
        expected = case.keras_function(y_true, y_pred.astype(dtype))
        result = case.function(y_true, y_pred.astype(dtype), **case.kwargs)
        # Keras's CTC computes half precision in float32; Circle keeps y_pred's dtype
        assert result.dtype == np.dtype(expected.dtype), dtype
        if dtype == "float16":
            np.testing.assert_allclose(result, np.asarray(expected), rtol=2e-2, atol=2e-2)
        else:
            close(result, np.asarray(expected), dtype)


def test_circle_with_reference_embeddings_matches_keras() -> None:
    rng = np.random.default_rng(5)
    labels, embeddings = inputs(CIRCLE_CASE, seed=5)
    ref_labels = rng.integers(0, 5, size=7)
    references = rng.normal(size=(7, embeddings.shape[1]))
    references /= np.linalg.norm(references, axis=1, keepdims=True)
    for remove_diagonal in (True, False):
        kwargs = {"remove_diagonal": remove_diagonal, "gamma": 64.0, "margin": 0.3}
        expected = keras.losses.circle(labels, embeddings, ref_labels, references, **kwargs)
        for backend in (NUMPY, TORCH, JAX, STRICT):
            result = losskit.circle(
                backend.asarray(labels),
                backend.asarray(embeddings),
                ref_labels=backend.asarray(ref_labels),
                ref_embeddings=backend.asarray(references),
                **kwargs,
            )
            close(backend.to_numpy(result), np.asarray(expected), "float64")


def test_circle_values_from_the_circle_paper_formula() -> None:
    # two classes of two unit vectors; gamma=1, margin=0: s_p = -d(d... computed by hand
    e = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-0.8, 0.6]])
    d = np.maximum(1.0 - e @ e.T, 0.0)
    gamma, m = 2.0, 0.25
    expected = []
    for i, positives, negatives in ((0, [1], [2, 3]), (1, [0], [2, 3])):
        s_p = [-gamma * max(m + d[i, j], 0.0) * (m - d[i, j]) for j in positives]
        s_n = [gamma * max(1 + m - d[i, j], 0.0) * (1 - m - d[i, j]) for j in negatives]
        total = np.log(np.sum(np.exp(s_p))) + np.log(np.sum(np.exp(s_n)))
        expected.append(np.log1p(np.exp(total)))
    result = losskit.circle([1, 1, 2, 2], e, gamma=gamma, margin=m)
    np.testing.assert_allclose(result[:2], expected, rtol=1e-12)


@st.composite
def ctc_problem(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """Any labels Keras accepts: blanks inside, all-zero rows, repeats, labels
    past the classes or negative (log-probability 0, as in Keras), sequences too
    long for the time steps."""
    # few distinct shapes: each costs Keras a compilation
    batch, steps, width = (draw(st.sampled_from(n)) for n in ((1, 3), (1, 2, 5), (1, 3)))
    classes = draw(st.sampled_from((2, 4)))  # 1: the class squeezes it away, as Keras's does
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    y_true = rng.integers(-1, classes + 1, size=(batch, width)).astype(float)
    y_true[rng.random(y_true.shape) < 0.3] = 0.0
    return y_true, rng.normal(size=(batch, steps, classes)) * draw(
        st.sampled_from([0.1, 3.0, 30.0])
    )


@st.composite
def circle_problem(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    batch, dim = draw(st.sampled_from((1, 4, 7))), draw(st.sampled_from((1, 3)))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    embeddings = rng.normal(size=(batch, dim))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    kwargs = {
        "gamma": draw(st.sampled_from([0.0, 1.0, 80.0, 256.0])),
        "margin": draw(st.sampled_from([-0.2, 0.0, 0.25, 0.4, 1.5])),
        "remove_diagonal": draw(st.booleans()),
    }
    return rng.integers(0, draw(st.integers(1, 4)), size=batch).astype(float), embeddings, kwargs


@hypothesis.settings(max_examples=10)
@given(ctc_problem(), st.sampled_from(REDUCTIONS))
def test_random_ctc_problems_match_keras(
    problem: tuple[np.ndarray, np.ndarray], reduction: str | None
) -> None:
    y_true, y_pred = problem
    expected = keras_class_value(CTC_CASE, y_true, y_pred, reduction=reduction)
    close(losskit.CTC(reduction=reduction, dtype="float64")(y_true, y_pred), expected, "float64")


@hypothesis.settings(max_examples=10)
@given(circle_problem(), st.sampled_from(REDUCTIONS))
def test_random_circle_problems_match_keras(
    problem: tuple[np.ndarray, np.ndarray, dict[str, Any]], reduction: str | None
) -> None:
    y_true, y_pred, kwargs = problem
    case = Case("Circle", kwargs)
    expected = keras_class_value(case, y_true, y_pred, reduction=reduction)
    result = losskit.Circle(**kwargs, reduction=reduction, dtype="float64")(y_true, y_pred)
    close(result, expected, "float64")


# --- gradients -------------------------------------------------------------


@pytest.mark.parametrize("case", STRUCTURED_CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean_with_sample_weight"])
def test_gradient_matches_keras(case: Case, reduction: str) -> None:
    y_true, y_pred = inputs(case, seed=6)
    weight = weights(y_pred.shape[0])["per_sample"]
    expected = keras_class_gradient(case, y_true, y_pred, weight, reduction)
    loss = case.losskit_loss(reduction=reduction, dtype="float64")
    p = torch.tensor(y_pred, requires_grad=True)
    loss(torch.as_tensor(y_true), p, torch.as_tensor(weight)).backward()
    assert p.grad is not None
    np.testing.assert_allclose(p.grad.numpy(), expected, rtol=1e-9, atol=1e-12)
    actual = jax.grad(lambda q: loss(jnp.asarray(y_true), q, jnp.asarray(weight)))(
        jnp.asarray(y_pred)
    )
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=1e-9, atol=1e-12)


def test_ctc_without_alignment_gives_keras_value_and_gradient() -> None:
    # [1, 1, 2] needs 4 steps (a blank between the repeats); 3 are given.
    rng = np.random.default_rng(7)
    y_true = np.array([[1.0, 1.0, 2.0], [2.0, 1.0, 0.0]])
    y_pred = rng.normal(size=(2, 3, 4))
    expected = keras_class_value(CTC_CASE, y_true, y_pred, reduction=None)
    assert expected[0] > 1e4 > expected[1]  # of order -LOG_ZERO, but finite
    result = losskit.CTC(reduction=None, dtype="float64")(y_true, y_pred)
    close(result, expected, "float64")
    gradient = keras_class_gradient(CTC_CASE, y_true, y_pred)
    p = torch.tensor(y_pred, requires_grad=True)
    losskit.CTC(dtype="float64")(torch.as_tensor(y_true), p).backward()
    assert p.grad is not None
    np.testing.assert_allclose(p.grad.numpy(), gradient, rtol=1e-9, atol=1e-12)


def test_circle_gradient_is_finite_for_samples_without_positives() -> None:
    labels = np.array([1.0, 1.0, 2.0, 3.0])  # 2 and 3 have no positives
    embeddings = np.random.default_rng(8).normal(size=(4, 3))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    expected = keras_class_gradient(CIRCLE_CASE, labels, embeddings)
    p = torch.tensor(embeddings, requires_grad=True)
    losskit.Circle(dtype="float64")(torch.as_tensor(labels), p).backward()
    assert p.grad is not None
    assert np.isfinite(p.grad.numpy()).all()
    np.testing.assert_allclose(p.grad.numpy(), expected, rtol=1e-9, atol=1e-12)


def test_ctc_long_sequences_neither_underflow_nor_overflow() -> None:
    rng = np.random.default_rng(9)
    steps, classes = 400, 6
    y_true = rng.integers(1, classes, size=(2, 60)).astype(float)
    y_pred = rng.normal(size=(2, steps, classes)) * 4.0
    wide = losskit.ctc(y_true, y_pred)
    assert np.all(np.isfinite(wide))
    assert np.all(wide > 800.0)  # exp(-loss) underflows float64
    narrow = losskit.ctc(y_true, y_pred.astype("float32"))
    np.testing.assert_allclose(narrow, wide, rtol=1e-5)
    p = torch.tensor(y_pred.astype("float32"), requires_grad=True)
    losskit.ctc(torch.as_tensor(y_true), p).sum().backward()
    assert p.grad is not None
    assert bool(torch.isfinite(p.grad).all())


# --- CTC against torch and optax ------------------------------------------


def _ctc_problem(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    batch, steps, classes, width = 5, 30, 7, 12
    y_pred = rng.normal(size=(batch, steps, classes)) * 2.0
    labels = rng.integers(1, classes, size=(batch, width))
    lengths = np.array([1, 4, 7, 12, 9])
    return np.where(np.arange(width) < lengths[:, None], labels, 0), y_pred


def test_ctc_matches_torch_nn_functional_ctc_loss() -> None:
    y_true, y_pred = _ctc_problem(10)
    log_probs = torch.log_softmax(torch.as_tensor(y_pred), dim=-1).permute(1, 0, 2)
    expected = torch.nn.functional.ctc_loss(
        log_probs,
        torch.as_tensor(y_true),
        input_lengths=torch.full((y_true.shape[0],), y_pred.shape[1]),
        target_lengths=torch.as_tensor((y_true != 0).sum(axis=1)),
        blank=0,
        reduction="none",
    )
    close(losskit.ctc(y_true, y_pred), expected.numpy(), "float64")
    close(losskit.ctc(y_true, y_pred.astype("float32")), expected.float().numpy(), "float32")


def test_ctc_matches_optax() -> None:
    optax = pytest.importorskip("optax")
    y_true, y_pred = _ctc_problem(11)
    expected = optax.ctc_loss(
        jnp.asarray(y_pred),
        jnp.zeros(y_pred.shape[:2]),
        jnp.asarray(y_true),
        jnp.asarray((y_true == 0).astype(float)),
        blank_id=0,
    )
    close(losskit.ctc(jnp.asarray(y_true), jnp.asarray(y_pred)), np.asarray(expected), "float64")


def test_ctc_with_a_single_label_column_matches_keras() -> None:
    y_true, y_pred = (
        np.array([[1.0], [0.0], [2.0]]),
        np.random.default_rng(15).normal(size=(3, 2, 3)),
    )
    expected = keras_class_value(CTC_CASE, y_true, y_pred, reduction=None)
    close(losskit.CTC(reduction=None, dtype="float64")(y_true, y_pred), expected, "float64")


def test_ctc_minus_one_padding_counts_as_labels_as_in_keras() -> None:
    # TF-era code pads with -1; Keras 3 (and losskit) count it as a label.
    y_true = np.array([[1.0, 2.0, -1.0, -1.0]])
    y_pred = np.random.default_rng(12).normal(size=(1, 6, 3))
    expected = keras_class_value(CTC_CASE, y_true, y_pred, reduction=None)
    close(losskit.CTC(reduction=None, dtype="float64")(y_true, y_pred), expected, "float64")
    assert not np.allclose(expected, losskit.ctc(np.array([[1.0, 2.0, 0.0, 0.0]]), y_pred))


# --- transformations -------------------------------------------------------


@pytest.mark.parametrize("case", STRUCTURED_CASES[:2], ids=lambda c: c.id)
def test_jax_jit_vmap_and_grad(case: Case) -> None:
    y_true, y_pred = inputs(case, seed=13)
    loss = case.losskit_loss(dtype="float64")
    t, p = jnp.asarray(y_true), jnp.asarray(y_pred)
    eager = keras_class_value(case, y_true, y_pred)
    np.testing.assert_allclose(jax.jit(lambda a, b: loss(a, b))(t, p), eager, rtol=1e-12)
    grad = jax.jit(jax.grad(lambda b: loss(t, b)))(p)
    np.testing.assert_allclose(
        grad, keras_class_gradient(case, y_true, y_pred), rtol=1e-9, atol=1e-12
    )
    stacked = jax.vmap(lambda a, b: case.function(a, b, **case.kwargs))(
        jnp.stack([t, t[::-1]]), jnp.stack([p, p[::-1]])
    )
    np.testing.assert_allclose(stacked[0], case.function(t, p, **case.kwargs), rtol=1e-12)
    np.testing.assert_allclose(
        stacked[1], case.function(t[::-1], p[::-1], **case.kwargs), rtol=1e-12
    )


@pytest.mark.parametrize("case", STRUCTURED_CASES[:2], ids=lambda c: c.id)
def test_torch_compile_fullgraph(case: Case) -> None:
    torch._dynamo.reset()
    y_true, y_pred = inputs(case, seed=14)
    loss = case.losskit_loss(dtype="float64")
    t = torch.as_tensor(y_true)
    p = torch.tensor(y_pred, requires_grad=True)
    compiled = torch.compile(lambda a, b: loss(a, b), fullgraph=True, backend="eager")
    value = compiled(t, p)
    value.backward()
    assert p.grad is not None
    np.testing.assert_allclose(value.detach().numpy(), keras_class_value(case, y_true, y_pred))
    expected = keras_class_gradient(case, y_true, y_pred)
    np.testing.assert_allclose(p.grad.numpy(), expected, rtol=1e-9, atol=1e-12)


# --- configs and registry --------------------------------------------------


@pytest.mark.parametrize(
    ("loss", "keras_loss"),
    [
        (
            losskit.CTC(name="myctc", reduction="sum"),
            keras.losses.CTC(name="myctc", reduction="sum"),
        ),
        (
            losskit.Circle(gamma=256, margin=0.25, remove_diagonal=False, name="c"),
            keras.losses.Circle(gamma=256, margin=0.25, remove_diagonal=False, name="c"),
        ),
    ],
    ids=["CTC", "Circle"],
)
def test_config_round_trip_and_keras_accepts_it(loss: losskit.Loss, keras_loss: Any) -> None:
    config = loss.get_config()
    assert {k: v for k, v in config.items() if k != "dtype"} == keras_loss.get_config()
    assert type(loss).from_config(config).get_config() == config
    rebuilt = losskit.deserialize(losskit.serialize(loss))
    assert type(rebuilt) is type(loss)
    assert rebuilt.get_config() == config
    from_keras = keras.losses.deserialize({"class_name": type(loss).__name__, "config": config})
    assert type(from_keras) is type(keras_loss)
    assert from_keras.get_config() == keras_loss.get_config()


def test_names_and_defaults() -> None:
    assert losskit.get("ctc") is losskit.ctc
    assert losskit.get("circle") is losskit.circle
    assert isinstance(losskit.get("CTC"), losskit.CTC)
    assert isinstance(losskit.get("Circle"), losskit.Circle)
    assert losskit.CTC().get_config() == {
        "name": "ctc",
        "reduction": "sum_over_batch_size",
        "dtype": "float32",
    }
    config = losskit.Circle().get_config()
    assert config == {
        "name": "circle",
        "reduction": "sum_over_batch_size",
        "dtype": "float32",
        "gamma": 80.0,
        "margin": 0.4,
        "remove_diagonal": True,
    }
    assert {k: v for k, v in config.items() if k != "dtype"} == keras.losses.Circle().get_config()


# --- errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"gamma": -1.0}, ValueError, "`gamma` must be a finite number >= 0"),
        ({"gamma": float("inf")}, ValueError, "`gamma` must be a finite number >= 0"),
        ({"gamma": "80"}, TypeError, "`gamma` must be a real number"),
        ({"margin": float("nan")}, ValueError, "`margin` must be a finite number"),
        ({"margin": None}, TypeError, "`margin` must be a real number"),
    ],
)
def test_circle_rejects_bad_arguments(kwargs: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        losskit.Circle(**kwargs)
    with pytest.raises(error, match=message):
        losskit.circle([0, 1], np.eye(2), **kwargs)


@pytest.mark.parametrize(
    ("y_true", "y_pred", "message"),
    [
        (
            np.ones((2, 3, 1)),
            np.zeros((2, 4, 3)),
            r"`y_true` must be integer labels of shape \(batch_size, max_label_length\)",
        ),
        (
            np.ones((2, 3)),
            np.zeros((2, 4)),
            r"`y_pred` must be logits of shape \(batch_size, time_steps, num_classes\)",
        ),
        (
            np.ones((3, 3)),
            np.zeros((2, 4, 3)),
            r"same batch size .* y_true.shape=\(3, 3\), y_pred.shape=\(2, 4, 3\)",
        ),
        (np.ones((2, 0)), np.zeros((2, 4, 3)), "max_label_length >= 1"),
    ],
)
def test_ctc_rejects_bad_shapes(y_true: Any, y_pred: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        losskit.ctc(y_true, y_pred)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            (np.ones((2, 2)), np.eye(2)),
            r"`y_true` must be integer labels of shape \(batch,\) or \(batch, 1\)",
        ),
        ((np.ones(3), np.eye(2)), r"`y_true` must hold one label per row of `y_pred`"),
        ((np.ones(2), np.ones((2, 2, 2))), r"embeddings of shape \(batch, dim\)"),
        ((np.ones(2), np.eye(2), np.ones(3), np.ones((3, 3))), "with the same dim"),
        (
            (np.ones(2), np.eye(2), np.ones(2), np.ones((3, 2))),
            "`ref_labels` must hold one label per row",
        ),
    ],
)
def test_circle_rejects_bad_shapes(arguments: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        losskit.circle(*arguments)
