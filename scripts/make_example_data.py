"""Build the example data set bundled with losskit: real regression predictions.

scikit-learn's diabetes data (442 patients, shipped with scikit-learn, no
download) has a quantitative measure of disease progression one year after
baseline (the target, 25 to 346).  A ridge regression on the ten baseline
variables predicts it out of fold (5-fold cross-validation, so every
prediction is for a patient the model did not see).  Four predictions are then
corrupted, as a faulty pipeline might (a sign flip, a unit error and two wild
values), so that the robust losses (Huber, log-cosh, MAE) visibly disagree
with MSE.

Columns: ``patient`` (row number in the original data), ``sex`` (1 or 2, as
coded in the data), ``age_group`` (``<40``, ``40-59``, ``60+``), ``bmi``,
``y_true`` (the measured progression), ``y_pred`` (the prediction).

Run from the repository root (needs scikit-learn)::

    python scripts/make_example_data.py

It writes ``src/losskit/data/diabetes_predictions.csv``; the output is
deterministic.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold, cross_val_predict

OUTPUT = Path(__file__).resolve().parent.parent / "src" / "losskit" / "data"
OUTPUT_FILE = OUTPUT / "diabetes_predictions.csv"


def age_group(age: float) -> str:
    if age < 40:
        return "<40"
    return "40-59" if age < 60 else "60+"


def main() -> None:
    raw = load_diabetes(scaled=False)
    scaled = load_diabetes()
    model = RidgeCV(alphas=np.logspace(-3, 2, 20))
    folds = KFold(n_splits=5, shuffle=True, random_state=0)
    prediction = cross_val_predict(model, scaled.data, scaled.target, cv=folds)
    rng = np.random.default_rng(2024)
    corrupted = rng.choice(len(prediction), size=4, replace=False)
    prediction[corrupted[0]] = -prediction[corrupted[0]]  # sign flip
    prediction[corrupted[1]] = prediction[corrupted[1]] * 10.0  # unit error
    prediction[corrupted[2]] = 900.0  # wild values
    prediction[corrupted[3]] = 0.0
    columns = list(raw.feature_names)
    OUTPUT.mkdir(parents=True, exist_ok=True)
    with OUTPUT_FILE.open("w", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(["patient", "sex", "age_group", "bmi", "y_true", "y_pred"])
        for i, (features, target) in enumerate(zip(raw.data, raw.target, strict=True)):
            row = dict(zip(columns, features, strict=True))
            writer.writerow(
                [
                    i,
                    int(row["sex"]),
                    age_group(row["age"]),
                    f"{row['bmi']:.1f}",
                    f"{target:.0f}",
                    f"{prediction[i]:.2f}",
                ]
            )
    rows = sorted(int(i) for i in corrupted)
    print(f"wrote {OUTPUT_FILE} ({len(prediction)} rows; corrupted rows {rows})")


if __name__ == "__main__":
    main()
