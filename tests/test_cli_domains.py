"""``losskit evaluate`` on data outside a loss's domain (a warning per loss
with the count of offending rows; ``--strict`` makes it an error), losses the
command line cannot compute (the sequence and metric-learning families), and
a CSV file with several bad rows."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from losskit import registry, spec
from losskit.cli import domains, main, specs

# Targets and predictions chosen so that each domain is broken by known rows.
Y_TRUE = [0.0, 1.0, 2.0, -1.0, 0.5]
Y_PRED = [0.5, 0.5, 3.0, 0.2, -0.1]


def write_csv(path: Path, y_true: list[float], y_pred: list[float]) -> str:
    lines = ["y_true,y_pred", *(f"{t!r},{p!r}" for t, p in zip(y_true, y_pred, strict=True))]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["evaluate", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("batch_rows", ["1", "2", "100"])
def test_rows_outside_a_domain_are_counted_and_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], batch_rows: str
) -> None:
    path = write_csv(tmp_path / "regression.csv", Y_TRUE, Y_PRED)
    code, out, err = run(
        capsys, path, "--loss", "mse,bce,poisson,Hinge,msle,kld", "--format", "json",
        "--batch-rows", batch_rows,
    )  # fmt: skip
    assert code == 0
    warnings = json.loads(out)["domain_warnings"]
    assert warnings == {
        "binary_crossentropy": {
            "rows": 3,
            "problems": ["targets outside [0, 1]", "predictions outside [0, 1]"],
        },
        "poisson": {"rows": 2, "problems": ["negative targets", "negative predictions"]},
        "hinge": {"rows": 2, "problems": ["labels other than -1 and 1, or 0 and 1"]},
        "mean_squared_logarithmic_error": {
            "rows": 2,
            "problems": ["negative targets, clipped to 0", "negative predictions, clipped to 0"],
        },
        "kl_divergence": {
            "rows": 3,
            "problems": ["targets outside [0, 1], clipped", "predictions outside [0, 1], clipped"],
        },
    }
    lines = err.splitlines()
    assert len(lines) == 5
    assert (
        "losskit evaluate: warning: binary_crossentropy: 3 of 5 rows are outside its "
        "domain: targets outside [0, 1]; predictions outside [0, 1]. Its value may be "
        "meaningless for this data." in lines
    )


def test_strict_makes_it_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_csv(tmp_path / "regression.csv", Y_TRUE, Y_PRED)
    code, out, err = run(capsys, path, "--loss", "mse,bce", "--strict")
    assert (code, out) == (1, "")
    assert err == (
        "losskit evaluate: error: --strict: binary_crossentropy: 3 of 5 rows are outside "
        "its domain: targets outside [0, 1]; predictions outside [0, 1]. Drop these "
        "losses or fix the data.\n"
    )
    code, out, err = run(capsys, path, "--loss", "mse,huber", "--strict")
    assert (code, err) == (0, "")


def test_all_on_regression_data_warns_for_each_loss_out_of_its_domain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_csv(tmp_path / "regression.csv", Y_TRUE, Y_PRED)
    code, out, err = run(capsys, path, "--loss", "all", "--format", "json")
    assert code == 0
    report = json.loads(out)
    warned = set(report["domain_warnings"])
    assert {"binary_crossentropy", "dice", "kl_divergence", "poisson", "hinge"} <= warned
    assert warned <= set(report["losses"])
    assert not warned & {"mean_squared_error", "huber_loss", "log_cosh"}
    assert len(err.splitlines()) == len(warned)


def test_data_inside_the_domains_gives_no_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_csv(tmp_path / "binary.csv", [0.0, 1.0, 1.0, 0.0], [0.1, 0.9, 0.6, 0.0])
    code, _, err = run(capsys, path, "--loss", "bce,dice,Hinge,poisson,kld", "--strict")
    assert (code, err) == (0, "")


def test_every_domain_has_checks_that_accept_its_own_valid_inputs() -> None:
    """Each domain of a loss the command line computes is known here, and the
    inputs ``losskit.spec.DOMAINS`` draws as valid for it raise no warning."""
    rng = np.random.default_rng(0)
    used = {info.domain for info in registry.LOSSES if info.family in specs.FAMILIES}
    used |= {
        info.logits_domain
        for info in registry.LOSSES
        if info.family in specs.FAMILIES and info.logits_domain
    }
    missing = sorted(used - set(domains.CHECKS))
    assert not missing, f"add these domains to losskit.cli.domains.CHECKS: {missing}"
    # MSLE's recipe draws values down to -0.5, to exercise its clipping: the
    # command line warns about negative values all the same.
    for name in sorted(used - {"above_minus_one"}):
        y_true, y_pred = spec.DOMAINS[name](rng, (200, 3))
        if y_true.ndim == 1:  # class labels
            y_true = y_true[:, None]
        for check in domains.CHECKS[name]:
            assert not check.rows(y_true, y_pred).any(), (name, check.what)


def test_unsupported_families_are_refused_and_left_out_of_all(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Works whether or not the sequence (CTC) and metric-learning (Circle)
    losses exist: Huber and LogCosh pretend to be of those families."""
    pretend = {"huber_loss": "sequence", "log_cosh": "metric_learning"}
    patched = tuple(
        dataclasses.replace(i, family=pretend[i.name]) if i.name in pretend else i
        for i in registry.LOSSES
    )
    monkeypatch.setattr(registry, "LOSSES", patched)
    path = write_csv(tmp_path / "data.csv", [0.0, 1.0], [0.5, 0.5])
    code, out, err = run(capsys, path, "--loss", "mse,huber:delta=2.0")
    assert (code, out) == (1, "")
    assert err.startswith(
        "losskit evaluate: error: --loss 'huber:delta=2.0': the command line cannot "
        "compute Huber, of the family 'sequence': its losses (CTC) score label sequences"
    )
    assert len(err.splitlines()) == 1
    code, out, err = run(capsys, path, "--loss", "logcosh")
    assert code == 1
    assert "of the family 'metric_learning'" in err
    code, out, err = run(capsys, path, "--loss", "metric_learning")
    assert code == 1
    assert "cannot compute the family 'metric_learning'" in err
    code, out, _ = run(capsys, path, "--loss", "all", "--format", "json")
    assert code == 0
    computed: dict[str, Any] = json.loads(out)["losses"]
    assert "mean_squared_error" in computed
    assert not {"huber_loss", "log_cosh"} & set(computed)


def test_real_sequence_and_metric_learning_losses_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    unsupported = [i for i in registry.LOSSES if i.family in specs.UNSUPPORTED_FAMILIES]
    if not unsupported:
        pytest.skip("no sequence or metric-learning loss is registered yet")
    path = write_csv(tmp_path / "data.csv", [0.0, 1.0], [0.5, 0.5])
    for info in unsupported:
        code, out, err = run(capsys, path, "--loss", info.name)
        assert (code, out) == (1, "")
        assert f"cannot compute {info.cls.__name__}, of the family {info.family!r}" in err


def test_every_bad_row_of_a_csv_is_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An empty value on line 2 and ``oops`` on line 3: both reported."""
    path = tmp_path / "two.csv"
    path.write_text("y_true,y_pred\n,1\n2,oops\n3,3\n")
    code, out, err = run(capsys, str(path))
    assert (code, out) == (1, "")
    assert err == (
        f"losskit evaluate: error: {path}, row 1 (line 2): column 'y_true' is missing (''). "
        "1 more problem: row 2 (line 3): column 'y_pred' has a non-numeric value 'oops'.\n"
    )
    code, out, err = run(capsys, str(path), "--nan-policy", "omit")
    assert err == (
        f"losskit evaluate: error: {path}, row 2 (line 3): column 'y_pred' has a "
        "non-numeric value 'oops'.\n"
    )
    many = tmp_path / "many.csv"
    many.write_text("y_true,y_pred\n" + "x,1\n" * 10)
    code, out, err = run(capsys, str(many))
    assert code == 1
    assert "row 1 (line 2): column 'y_true' has a non-numeric value 'x'. 9 more problems: " in err
    assert err.endswith("; 7 more not shown.\n")


EDGE_COLUMNS = [
    np.array([0.5, 0.25, 1.0]),
    np.array([0.0, 1.0, 0.0]),
    np.array([-1.0, 1.0, 0.0]),
    np.array([-0.0, 2.0, 3.0]),
    np.array([np.nan, 0.5, 0.5]),
    np.array([np.inf, 0.5, -np.inf]),
    np.array([1e-300, -1e-300, 5.0]),
    np.array([1.0 + 2**-52, 0.5, 0.5]),
]


@pytest.mark.parametrize("t", EDGE_COLUMNS)
@pytest.mark.parametrize("p", EDGE_COLUMNS)
def test_the_quick_clearance_never_hides_a_violation(t: np.ndarray, p: np.ndarray) -> None:
    """A check's reductions may only skip the row-by-row look where it would
    find nothing."""
    t2, p2 = t.reshape(-1, 1), p.reshape(-1, 1)
    for checks in domains.CHECKS.values():
        for check in checks:
            if check.clear is None:
                continue
            with np.errstate(invalid="ignore"):
                rows = check.rows(t2, p2)
                if check.clear(t2, p2):
                    assert not rows.any(), (check.what, t, p)


def test_a_finite_batch_whose_sum_overflows_is_still_accepted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "big.csv"
    path.write_text("y_true,y_pred\n1e308,1e308\n1e308,1e308\n")
    assert main(["evaluate", str(path), "--loss", "mae", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["losses"]["mean_absolute_error"] == 0.0
