"""Bad input gets a clear ValueError or TypeError naming the argument, what
was received and what was expected; nothing is silently broadcast."""

from __future__ import annotations

import numpy as np
import pytest

import losskit
from tests.cases import CASES


@pytest.mark.parametrize(
    "function",
    [c.function for c in CASES if c.loss != "SparseCategoricalCrossentropy"],
    ids=lambda f: f.__name__,
)
def test_mismatched_shapes_are_rejected_not_broadcast(function: object) -> None:
    y_true, y_pred = np.ones((4, 3)), np.full((4, 1), 0.5)
    with pytest.raises(ValueError, match=r"y_true.shape=\(4, 3\), y_pred.shape=\(4, 1\)"):
        function(y_true, y_pred)  # type: ignore[operator]


def test_trailing_dimension_of_one_is_aligned_not_broadcast() -> None:
    # PyTorch's mse_loss would broadcast (4,) against (4, 1) to (4, 4).
    result = losskit.MeanSquaredError(reduction=None)(np.zeros(4), np.ones((4, 1)))
    assert result.shape == (4,)


def test_scalar_targets_are_not_broadcast() -> None:
    with pytest.raises(ValueError, match="must have the same shape"):
        losskit.mean_squared_error(0.0, np.ones((3, 2)))


def test_rank_zero_predictions_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"`y_pred` must have rank >= 1"):
        losskit.mean_absolute_error(1.0, 2.0)


def test_sparse_labels_must_match_predictions_without_classes() -> None:
    with pytest.raises(ValueError, match=r"y_true.shape=\(3,\), y_pred.shape=\(4, 5\)"):
        losskit.sparse_categorical_crossentropy(np.zeros(3), np.ones((4, 5)))


def test_unknown_reduction_suggests_the_closest() -> None:
    with pytest.raises(
        ValueError, match=r"'sum_over_batchsize'.*Did you mean 'sum_over_batch_size'"
    ):
        losskit.MeanSquaredError(reduction="sum_over_batchsize")
    with pytest.raises(ValueError, match="Invalid value for argument `reduction`"):
        losskit.reduce_weighted_values(np.ones(3), reduction="avg")


def test_unknown_loss_name_suggests_the_closest() -> None:
    with pytest.raises(
        ValueError,
        match=r"Unknown loss 'mean_squard_error'. Did you mean 'mean_squared_error'",
    ):
        losskit.get("mean_squard_error")
    with pytest.raises(ValueError, match=r"Did you mean 'MeanSquaredError'"):
        losskit.get("meansquarederror")
    with pytest.raises(ValueError, match=r"Unknown loss class 'Hubber'.*Did you mean 'Huber'"):
        losskit.deserialize({"class_name": "Hubber", "config": {}})


@pytest.mark.parametrize(
    "bad",
    [["a", "b"], np.array(["x", "y"]), [object(), object()], np.array([1 + 2j, 3j])],
    ids=["list_of_str", "str_array", "objects", "complex"],
)
def test_non_numeric_input_is_a_type_error(bad: object) -> None:
    with pytest.raises(TypeError, match="`y_true` must"):
        losskit.mean_squared_error(bad, np.ones(2))
    with pytest.raises(TypeError, match="`y_pred` must"):
        losskit.MeanSquaredError()(np.ones(2), bad)
    with pytest.raises(TypeError, match="`sample_weight` must"):
        losskit.MeanSquaredError()(np.ones((2, 1)), np.ones((2, 1)), sample_weight=bad)


def test_sample_weight_that_does_not_broadcast() -> None:
    loss = losskit.MeanSquaredError()
    y = np.ones((4, 3, 2))
    with pytest.raises(ValueError, match=r"shapes \(4, 3\) and \(4,\) cannot be broadcast"):
        loss(y, y, sample_weight=np.ones(4))


def test_sample_weight_may_not_enlarge_the_losses() -> None:
    y = np.ones((4, 3))
    with pytest.raises(ValueError, match=r"would broadcast the losses of shape \(4,\) to \(4, 4\)"):
        losskit.MeanSquaredError()(y, y, sample_weight=np.ones((4, 4)))


def test_mask_that_does_not_match() -> None:
    y = np.ones((4, 3))
    with pytest.raises(ValueError, match="cannot be broadcast"):
        losskit.MeanSquaredError()(y, y, mask=np.ones(5, dtype=bool))


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (
            lambda: losskit.Huber(delta=0.0),
            ValueError,
            "`delta` must be a finite number > 0",
        ),
        (lambda: losskit.Huber(delta=-1.0), ValueError, "delta=-1.0"),
        (lambda: losskit.Huber(delta="1"), TypeError, "`delta` must be a real number"),
        (
            lambda: losskit.BinaryCrossentropy(label_smoothing=1.5),
            ValueError,
            "label_smoothing",
        ),
        (
            lambda: losskit.CategoricalCrossentropy(axis=True),
            TypeError,
            "`axis` must be of type int",
        ),
        (
            lambda: losskit.SparseCategoricalCrossentropy(ignore_class=1.5),
            TypeError,
            "ignore_class",
        ),
        (
            lambda: losskit.Tversky(alpha=-0.1),
            ValueError,
            "`alpha` must be a finite number >= 0",
        ),
        (lambda: losskit.Dice(axis="1"), TypeError, "`axis` must be None, an int"),
        (
            lambda: losskit.MeanSquaredError(dtype="int32"),
            ValueError,
            "Invalid value for argument `dtype`",
        ),
        (
            lambda: losskit.MeanSquaredError(name=3),
            TypeError,
            "`name` must be a string",
        ),
        (lambda: losskit.set_floatx("float8"), ValueError, "set_floatx"),
        (lambda: losskit.set_epsilon(-1.0), ValueError, "set_epsilon"),
        (
            lambda: losskit.LossFunctionWrapper("mse"),
            TypeError,
            "`fn` must be callable",
        ),
    ],
)
def test_bad_constructor_arguments(make: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        make()  # type: ignore[operator]


def test_axis_out_of_range() -> None:
    with pytest.raises(ValueError, match="`axis`=3 is out of range for an array of rank 2"):
        losskit.cosine_similarity(np.ones((2, 2)), np.ones((2, 2)), axis=3)
    with pytest.raises(ValueError, match="repeated"):
        losskit.dice(np.ones((2, 2)), np.ones((2, 2)), axis=(1, -1))


def test_single_class_categorical_crossentropy_warns() -> None:
    with pytest.warns(UserWarning, match="number of classes"):
        losskit.categorical_crossentropy(np.ones((3, 1)), np.ones((3, 1)))


def test_base_loss_requires_call() -> None:
    with pytest.raises(NotImplementedError, match="must implement call"):
        losskit.Loss()(np.ones(2), np.ones(2))


def test_get_rejects_non_callables() -> None:
    with pytest.raises(TypeError, match="Could not interpret loss identifier"):
        losskit.get(3.5)


def test_bfloat16_without_numpy_support() -> None:
    pytest.importorskip("ml_dtypes")
    result = losskit.MeanSquaredError(dtype="bfloat16")(np.ones((2, 2)), np.zeros((2, 2)))
    assert str(result.dtype) == "bfloat16"
    assert float(result) == 1.0


def test_class_calls_do_not_recheck_arguments_validated_at_construction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Arguments are checked once, in __init__; the function forms check them on
    # every call, the class path does not.
    import numpy as np

    from losskit.functional import probabilistic, regression, segmentation

    losses = [
        losskit.Huber(delta=2.0),
        losskit.BinaryCrossentropy(label_smoothing=0.1),
        losskit.CategoricalCrossentropy(label_smoothing=0.1),
        losskit.SparseCategoricalCrossentropy(ignore_class=0),
        losskit.Tversky(alpha=0.3, beta=0.7),
    ]

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("an argument was checked again at call time")

    for module in (probabilistic, regression, segmentation):
        for name in (
            "check_delta",
            "check_label_smoothing",
            "check_class_axis",
            "check_ignore_class",
            "check_coefficient",
        ):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, refuse)
    y_true, y_pred = np.array([[0.0, 1.0, 0.0]]), np.array([[0.2, 0.7, 0.1]])
    for loss in losses:
        labels = (
            np.array([1]) if isinstance(loss, losskit.SparseCategoricalCrossentropy) else y_true
        )
        assert np.isfinite(loss(labels, y_pred))
    with pytest.raises(AssertionError, match="checked again"):
        losskit.huber(y_true, y_pred, delta=2.0)
