"""Compute every losskit loss on NumPy, PyTorch and JAX arrays of the same data
and print the results side by side (libraries that are not installed are
skipped)."""

from __future__ import annotations

import importlib.util

import numpy as np

import losskit
from losskit.spec import DOMAINS, SPECS, LossSpec

# The input shape per family: (samples, outputs), except CTC's logits
# (batch, time steps, classes) and Circle's batch of embeddings.
SHAPES = {"sequence": (8, 6, 4), "metric_learning": (8, 4)}


def make_inputs(spec: LossSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Small valid inputs for a loss, drawn from its spec's input domain."""
    y_true, y_pred = DOMAINS[spec.input_domain({})](rng, SHAPES.get(spec.family, (8, 4)))
    if spec.domain in ("sparse_probabilities", "label_sequences", "labelled_embeddings"):
        y_true = y_true.astype(np.int64)  # integer labels, as a user would pass them
    return y_true, y_pred


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
    header = f"{'loss':38}" + "".join(f"{name:>14}" for name in libraries)
    print(header)
    print("-" * len(header))
    for spec in SPECS:
        y_true, y_pred = make_inputs(spec, rng)
        loss = spec.cls()
        row = f"{spec.keras_name:38}"
        for convert in libraries.values():
            value = loss(convert(y_true), convert(y_pred))  # type: ignore[operator]
            row += f"{float(value):14.6f}"
        print(row)
    print(
        f"\nfloatx={losskit.floatx()}, epsilon={losskit.epsilon()}; "
        "every row must read the same across libraries, up to float32 rounding."
    )


if __name__ == "__main__":
    main()
