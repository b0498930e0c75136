"""Compute every losskit loss on NumPy, PyTorch and JAX arrays of the same data
and print the results side by side (libraries that are not installed are
skipped)."""

from __future__ import annotations

import importlib.util

import numpy as np

import losskit
from losskit.registry import LOSSES


def make_inputs(loss_name: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Small valid inputs for each loss family (8 samples, 4 outputs)."""
    shape = (8, 4)
    if loss_name == "SparseCategoricalCrossentropy":
        return rng.integers(0, 4, size=(8,)), rng.dirichlet(np.ones(4), size=8)
    if loss_name in ("CategoricalCrossentropy", "CategoricalHinge", "KLDivergence"):
        return np.eye(4)[rng.integers(0, 4, size=8)], rng.dirichlet(np.ones(4), size=8)
    if loss_name in ("BinaryCrossentropy", "Dice", "Tversky", "Hinge", "SquaredHinge"):
        return rng.integers(0, 2, size=shape), rng.uniform(0.05, 0.95, size=shape)
    if loss_name in ("Poisson", "MeanSquaredLogarithmicError"):
        return rng.poisson(2.0, size=shape), rng.uniform(0.1, 4.0, size=shape)
    return rng.normal(size=shape), rng.normal(size=shape)


def converters() -> dict[str, object]:
    """Functions turning a NumPy array into each installed library's array."""
    found: dict[str, object] = {"numpy": np.asarray}
    if importlib.util.find_spec("torch"):
        import torch

        found["torch"] = torch.asarray
    if importlib.util.find_spec("jax"):
        import jax.numpy as jnp

        found["jax"] = jnp.asarray
    return found


def main() -> None:
    rng = np.random.default_rng(0)
    libraries = converters()
    header = f"{'loss':34}" + "".join(f"{name:>14}" for name in libraries)
    print(header)
    print("-" * len(header))
    for info in LOSSES:
        y_true, y_pred = make_inputs(info.cls.__name__, rng)
        loss = info.cls()
        row = f"{info.name:34}"
        for convert in libraries.values():
            value = loss(convert(y_true), convert(y_pred))  # type: ignore[operator]
            row += f"{float(value):14.6f}"
        print(row)
    print(
        f"\nfloatx={losskit.floatx()}, epsilon={losskit.epsilon()}; "
        "every row must read the same across libraries."
    )


if __name__ == "__main__":
    main()
