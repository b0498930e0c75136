"""``losskit plot`` and ``losskit evaluate --plot``: the figures are written,
their derivatives are right, and the residual histogram counts every row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import losskit
from losskit.cli import main
from losskit.cli.histogram import SIZE, ResidualHistogram, bin_centres, bin_index
from losskit.cli.plot import depends_on_target, derivative, elementwise, plottable

pytest.importorskip("matplotlib")

PNG = b"\x89PNG\r\n\x1a\n"


def test_plot_writes_png_and_svg(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png, svg = tmp_path / "losses.png", tmp_path / "losses.svg"
    assert main(["plot", "--output", str(png)]) == 0
    assert png.read_bytes().startswith(PNG)
    assert png.stat().st_size > 20_000
    assert main(["plot", "--loss", "huber:delta=0.5,hinge,bce", "--output", str(svg)]) == 0
    text = svg.read_text()
    assert "<svg" in text
    assert f"wrote {svg}" in capsys.readouterr().out


def test_plot_families_keep_what_can_be_drawn() -> None:
    names = [loss.name for loss in plottable("all")]
    assert "mean_squared_error" in names
    assert "binary_crossentropy" in names
    assert "dice" not in names
    assert "categorical_crossentropy" not in names


def test_plot_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plot", "--loss", "dice", "--output", str(tmp_path / "x.png")]) == 1
    assert "Cannot plot dice" in capsys.readouterr().err
    assert main(["plot", "--output", str(tmp_path / "x.txt")]) == 1
    assert "ending in .png" in capsys.readouterr().err
    assert main(["plot", "--output", str(tmp_path / "missing" / "x.png")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("loss", "slope"),
    [
        (losskit.MeanSquaredError(), lambda e: 2.0 * e),
        (losskit.Huber(delta=0.5), lambda e: np.clip(e, -0.5, 0.5)),
        (losskit.LogCosh(), np.tanh),
        (losskit.MeanAbsoluteError(), np.sign),
    ],
)
def test_derivatives_are_the_calculus_ones(loss: losskit.Loss, slope: object) -> None:
    y_true = np.full(9, 1.5)
    errors = np.array([-3.0, -1.0, -0.4, -0.1, 0.0, 0.1, 0.4, 1.0, 3.0])
    got = derivative(loss, y_true, y_true + errors)
    want = slope(errors)  # type: ignore[operator]
    # At MAE's kink the central difference is the subgradient 0 = sign(0).
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_derivative_is_nan_at_a_jump() -> None:
    """Cosine similarity of one output jumps from 1 to -1 where y_pred
    changes sign: no derivative there, zero elsewhere."""
    loss = losskit.CosineSimilarity()
    y_pred = np.array([-1.0, -1e-6, 0.0, 1e-6, 1.0]) * 1e-3
    got = derivative(loss, np.ones(5), y_pred)
    assert np.isnan(got[1:4]).all()
    np.testing.assert_array_equal(got[[0, 4]], [0.0, 0.0])


def test_which_losses_depend_on_the_target() -> None:
    from losskit.cli.plot import _AXES

    axis = _AXES["regression"]
    dependent = {
        info.name
        for info in losskit.LOSSES
        if info.family == "regression" and depends_on_target(info.cls(), axis)
    }
    assert dependent == {
        "mean_absolute_percentage_error",
        "mean_squared_logarithmic_error",
        "cosine_similarity",
    }
    values = elementwise(losskit.MeanAbsolutePercentageError(), np.array([2.0]), np.array([3.0]))
    np.testing.assert_allclose(values, [50.0])


def test_evaluate_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    figure = tmp_path / "evaluation.png"
    assert main(["evaluate", "--group-by", "age_group", "--plot", str(figure)]) == 0
    assert "mean_squared_error" in capsys.readouterr().out
    assert figure.read_bytes().startswith(PNG)
    plain = tmp_path / "plain.svg"
    assert main(["evaluate", "--loss", "mse,mae", "--plot", str(plain), "--format", "json"]) == 0
    assert "<svg" in plain.read_text()


def test_evaluate_plot_error_leaves_no_result(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", "--plot", str(tmp_path / "figure.gif")]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "ending in .png" in captured.err


def test_residual_histogram_counts_every_element() -> None:
    rng = np.random.default_rng(0)
    y_true = rng.normal(size=(1000, 2))
    y_pred = y_true + rng.standard_cauchy(size=(1000, 2))  # heavy tails
    y_pred[0, 0] = y_true[0, 0]  # a zero residual
    y_pred[1, 0] = y_true[1, 0] + 1e300
    groups = np.array(["a", "b"] * 500)
    whole = ResidualHistogram()
    whole.update(y_true, y_pred)
    parts = ResidualHistogram()
    parts.update(y_true[:300], y_pred[:300], groups[:300])
    other = ResidualHistogram()
    other.update(y_true[300:], y_pred[300:], groups[300:])
    parts.merge(other)
    assert whole.total().sum() == 2000
    np.testing.assert_array_equal(parts.total(), whole.total())
    assert parts.counts["a"].sum() == 1000
    edges, counts, below, above = ResidualHistogram.linear(whole.total())
    assert counts.sum() + below + above == pytest.approx(2000, abs=1)  # (fractional counts)
    assert below > 0
    assert above > 0
    assert edges[0] < 0 < edges[-1]


def test_bins_are_ordered_and_cover_the_line() -> None:
    values = np.array([-1e15, -2.0, -1e-13, 0.0, 1e-13, 0.5, 2.0, 1e15])
    index = bin_index(values)
    assert np.all(np.diff(index) >= 0)
    assert index[0] == 0
    assert index[-1] == SIZE - 1
    centres = bin_centres()
    assert len(centres) == SIZE
    assert np.all(np.diff(centres) > 0)
    # A value falls in the bin whose centre is within a bin's width of it.
    for value in (-2.0, 0.5, 2.0):
        assert abs(centres[bin_index(np.array([value]))[0]] / value - 1) < 0.05


def test_linear_histogram_follows_the_data_without_gaps() -> None:
    """Each logarithmic bin's count is spread over its width: the linear bins
    (narrower than the logarithmic ones near the edges of the range) match
    NumPy's histogram of the values, where putting each count at its bin's
    centre left empty bins next to doubled ones."""
    rng = np.random.default_rng(1)
    residuals = rng.normal(size=200_000) * np.sqrt(2)
    histogram = ResidualHistogram()
    histogram.update(np.zeros((residuals.size, 1)), residuals[:, None])
    edges, counts, below, above = ResidualHistogram.linear(histogram.total())
    exact, _ = np.histogram(residuals, edges)
    assert counts.min() > 200
    np.testing.assert_allclose(counts, exact, rtol=0.15)  # (bins of 200-7000 rows)
    assert below == pytest.approx((residuals < edges[0]).sum(), rel=0.08)
    assert above == pytest.approx((residuals > edges[-1]).sum(), rel=0.08)


def test_bin_edges_hold_their_bins_values() -> None:
    from losskit.cli.histogram import bin_edges

    edges = bin_edges()
    assert len(edges) == SIZE + 1
    assert np.all(np.diff(edges) >= 0)
    values = np.concatenate([-np.logspace(-11.9, 11.9, 500), [0.0], np.logspace(-11.9, 11.9, 500)])
    index = bin_index(values)
    assert np.all((edges[index] <= values) & (values <= edges[index + 1]))


def test_evaluate_plot_says_how_many_groups_it_leaves_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import matplotlib.figure
    import pyarrow as pa
    import pyarrow.parquet as pq

    from losskit.cli import plot

    saved: list[matplotlib.figure.Figure] = []
    monkeypatch.setattr(
        matplotlib.figure.Figure, "savefig", lambda self, *a, **k: saved.append(self)
    )
    rng = np.random.default_rng(2)
    path = tmp_path / "groups.parquet"
    keys = np.arange(300) % 10
    pq.write_table(
        pa.table({"y_true": rng.normal(size=300), "y_pred": rng.normal(size=300), "g": keys}), path
    )
    assert (
        main(
            [
                "evaluate",
                str(path),
                "--group-by",
                "g",
                "--plot",
                str(tmp_path / "f.png"),
                "--format",
                "json",
            ]
        )
        == 0
    )
    capsys.readouterr()
    histogram, *bars = saved[0].axes
    legend = histogram.get_legend()
    assert legend.get_title().get_text() == f"the first {plot.PLOTTED_GROUPS} of 10 groups"
    assert len(legend.get_texts()) == 1 + plot.PLOTTED_GROUPS  # all rows and 8 groups
    assert len(bars[0].patches) == 1 + plot.PLOTTED_GROUPS


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_residuals_beyond_the_bins_are_outside_on_either_side(sign: float) -> None:
    """Residuals beyond 1e12 were drawn as a bar at +1e12 ("0 above") on the
    positive side and counted "below" on the negative side."""
    inside = np.linspace(-1.0, 1.0, 100)
    residuals = np.concatenate([inside, np.full(30, sign * 1e15), [-sign * 1e15]])
    histogram = ResidualHistogram()
    histogram.update(np.zeros((residuals.size, 1)), residuals[:, None])
    total = histogram.total()
    edges, counts, below, above = ResidualHistogram.linear(total)
    assert (below, above) == ((30, 1) if sign < 0 else (1, 30))
    assert counts.sum() == pytest.approx(100.0)
    assert edges[0] >= -1e12
    assert edges[-1] <= 1e12
    # with limits inside the data, every row is drawn or counted outside
    edges, counts, below, above = ResidualHistogram.linear(total, limits=(-0.5, 0.5))
    assert abs(counts.sum() + below + above - 131.0) <= 1.0  # (below and above are rounded)
    many, one = (below, above) if sign < 0 else (above, below)
    assert many >= 30 + 20
    assert 1 + 20 <= one < 30


def test_plot_refuses_a_sequence_loss_naming_no_other_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It said 'losskit evaluate cannot compute CTC' from losskit plot."""
    assert main(["plot", "--loss", "ctc", "--output", str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("losskit plot: error: --loss 'ctc': the command line cannot compute CTC")
    assert "evaluate" not in err
