"""A compliance check over the registry, in the style of scikit-learn's
estimator checks: every registered loss automatically gets the same checks,
so a new loss cannot land half-tested.

- Keras-oracle cases exist for it (``tests/cases.py``) and Keras has the class;
- if its spec binds a fused kernel, the entry exists with the constants the
  binding names, and the differential fuzzer's case pool covers it;
- every library x dtype that the README's backend table claims runs through
  the class path with fast paths on (at a size above the fast-path threshold),
  giving a finite value and, where the library has autograd, a gradient;
- the README's backend table names exactly the dtypes exercised here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jax
import keras
import numpy as np
import pytest
import torch

import losskit
from losskit import kernels
from losskit.spec import SPECS, LossSpec
from tests.backends import BACKENDS, GRAD_BACKENDS, Backend
from tests.cases import CASES, STRUCTURED_CASES, Case, case_inputs
from tests.test_fast_path_fuzz import fast_cases

README = Path(__file__).resolve().parent.parent / "README.md"
README_ROWS = {
    "numpy": "NumPy",
    "torch": "PyTorch (CPU)",
    "jax": "JAX",
    "array_api_strict": "array-api-strict",
    "dask": "Dask",
}
SPEC_IDS = [s.cls.__name__ for s in SPECS]


def _cases_of(spec: LossSpec) -> list[Case]:
    return [c for c in CASES + STRUCTURED_CASES if c.loss == spec.cls.__name__]


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_keras_oracle_cases_exist(spec: LossSpec) -> None:
    assert _cases_of(spec), f"tests/cases.py has no Case for {spec.cls.__name__}"
    assert hasattr(keras.losses, spec.cls.__name__)
    assert getattr(keras.losses, spec.function.__name__, None) is not None


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_kernel_binding_matches_its_entry_and_is_fuzzed(spec: LossSpec) -> None:
    if spec.kernel is None:
        pytest.skip(f"{spec.cls.__name__} has no fused kernel")
    fuzzed = [c for c in fast_cases() if c.loss == spec.cls.__name__]
    assert fuzzed, f"the fuzzer does not draw {spec.cls.__name__}"
    for case in fuzzed:
        loss = case.losskit_loss()
        binding = spec.kernel_for(loss.arguments, ndim=2)
        assert binding is not None, f"{case.id} is fuzzed but has no kernel"
        entry = kernels.entries()[binding.entry]
        assert sorted(dict(binding.constants)) == sorted(entry.names), case.id


def _dtype_claims() -> dict[str, set[str]]:
    """The dtypes each library's row of the README's backend table names."""
    section = README.read_text().split("## Backends", 1)[1].split("\n## ", 1)[0]
    claims = {}
    for key, label in README_ROWS.items():
        row = next(line for line in section.splitlines() if line.startswith(f"| {label} |"))
        dtypes = row.rsplit("|", 3)[-2]
        claims[key] = set(re.findall(r"\b(?:b?float16|float32|float64)\b", dtypes))
    return claims


def test_readme_backend_table_names_the_dtypes_tested() -> None:
    claims = _dtype_claims()
    for backend in BACKENDS:
        assert claims[backend.name] == set(backend.dtypes), backend.name


def _grad(backend: Backend, loss: losskit.Loss, y_true: Any, y_pred: Any) -> np.ndarray:
    if backend.name == "torch":
        prediction = y_pred.detach().clone().requires_grad_()
        loss(y_true, prediction).backward()
        return backend.to_numpy(prediction.grad)
    gradient = jax.grad(lambda p: loss(y_true, p).astype("float32"))(y_pred)
    return backend.to_numpy(gradient)


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.name)
def test_every_claimed_library_and_dtype_runs_the_class_path(
    spec: LossSpec, backend: Backend
) -> None:
    case = _cases_of(spec)[0]
    features = 8
    rows = kernels.MIN_ELEMENTS // features + 1  # above the fast-path threshold
    y_true, y_pred = case_inputs(case, case.shape or (rows, features), seed=12)
    for dtype in backend.dtypes:
        loss = case.losskit_loss(dtype=dtype)
        labels = spec.input_domain(case.kwargs).startswith("sparse")
        t = backend.asarray(y_true) if labels else backend.asarray(y_true, dtype)
        p = backend.asarray(y_pred, dtype)
        value = backend.to_numpy(loss(t, p))  # NumPy's warnings are errors in this suite
        assert value.shape == ()
        assert np.isfinite(value), (spec.cls.__name__, dtype)
        if backend in GRAD_BACKENDS:
            gradient = _grad(backend, loss, t, p)
            assert gradient.shape == y_pred.shape
            assert np.isfinite(gradient).all(), (spec.cls.__name__, dtype)


def test_every_spec_is_registered_and_resolvable() -> None:
    for spec in SPECS:
        assert losskit.get(spec.cls.__name__).__class__ is spec.cls
        for name in spec.function_names:
            assert losskit.get(name) is spec.function
        assert isinstance(losskit.deserialize(losskit.serialize(spec.cls())), spec.cls)


@pytest.mark.parametrize("spec", [s for s in SPECS if s.kernel is not None], ids=lambda s: s.name)
def test_fast_path_is_taken_on_valid_float32_numpy_and_torch(spec: LossSpec) -> None:
    case = _cases_of(spec)[0]
    y_true, y_pred = case_inputs(case, (kernels.MIN_ELEMENTS // 8 + 1, 8), seed=13)
    labels = spec.input_domain(case.kwargs).startswith("sparse")
    t = y_true if labels else y_true.astype("float32")
    p = y_pred.astype("float32")
    loss = case.losskit_loss()
    assert kernels.fused_call(loss, t, p, None, None) is not None
    tensor = torch.from_numpy(p).requires_grad_()
    assert kernels.fused_call(loss, torch.from_numpy(t), tensor, None, None) is not None


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_parameters_have_defaults_in_the_config(spec: LossSpec) -> None:
    config = spec.cls().get_config()
    for name, default in spec.parameters.items():
        assert name in config, f"{spec.cls.__name__}.get_config() lacks {name}"
        assert config[name] == (list(default) if isinstance(default, tuple) else default)
