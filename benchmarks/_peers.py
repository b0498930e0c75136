"""The columns of the benchmark (losskit, its reference path, the roofline and
the peers), the inputs of each loss, and the worker that measures one column.

Every column runs in a worker (by default its own process: Keras's backend is
chosen per process, and a fresh process keeps one column's memory and threads
out of another's).  A worker regenerates the inputs of each loss from the seed
(the same arrays in every process), measures the forward (``fwd``) and
forward+backward (``fwdbwd``) calls of each loss with :mod:`_measure`, and
returns plain JSON-able data.
"""

from __future__ import annotations

import gc
import sys
import time
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from _measure import Spec, measure

__all__ = [
    "COLUMNS",
    "COLUMN_DESCRIPTIONS",
    "DOMAIN_DESCRIPTIONS",
    "KERAS_BACKENDS",
    "OPTAX_MAPPING",
    "PEERS",
    "RATIO_PEERS",
    "TORCH_NN_MAPPING",
    "TORCH_NN_MISSING",
    "WorkerSettings",
    "has_inputs",
    "input_description",
    "make_inputs",
    "roofline_repeat",
    "run_worker",
    "torch_nn_description",
    "torch_nn_functions",
]

#: Every column, in table order.  ``roofline`` and ``losskit`` always run.
COLUMNS = (
    "roofline",
    "losskit",
    "reference",
    "keras-jax",
    "keras-torch",
    "torch-nn",
    "torch-compile",
    "optax",
)
#: What ``--peers`` accepts.
PEERS = ("keras-jax", "keras-torch", "torch-nn", "torch-compile", "optax", "reference")
#: The columns losskit is compared with ("fastest peer"); the reference is shown, not compared.
RATIO_PEERS = ("keras-jax", "keras-torch", "torch-nn", "torch-compile", "optax")
#: Columns that need Keras, and the backend their process gets.
KERAS_BACKENDS = {"keras-jax": "jax", "keras-torch": "torch"}

COLUMN_DESCRIPTIONS = {
    "roofline": (
        "losskit.kernels.roofline: fwd = read_pass(y_true, y_pred), one parallel Numba pass "
        "reading both inputs; fwd+bwd = read_write_pass(y_true, y_pred, out), which also writes "
        "a y_pred-sized array (sparse labels: y_pred is read twice in the same pass instead); "
        "run with 1, 2, ... Numba threads; the fastest pass (minimum) is the roofline"
    ),
    "losskit": (
        "losskit.<Class>() with default arguments and preference 'fast' (the default): fwd on "
        "NumPy arrays; fwd+bwd = loss(t, p).backward() on torch CPU tensors, p.requires_grad"
    ),
    "reference": "the same calls under losskit.prefer_backend('reference')",
    "keras-jax": (
        "keras.losses.<Class>() on KERAS_BACKEND=jax (own process): fwd = jax.jit(loss)(t, p), "
        "fwd+bwd = jax.jit(jax.value_and_grad(loss wrt p)), block_until_ready"
    ),
    "keras-torch": (
        "keras.losses.<Class>() on KERAS_BACKEND=torch (own process), eager torch CPU tensors: "
        "fwd = loss(t, p); fwd+bwd = loss(t, p).backward()"
    ),
    "torch-nn": (
        "the torch.nn.functional equivalent (see the mapping) on torch CPU tensors: fwd, and "
        "fwd+bwd with .backward(); '-' where none exists"
    ),
    "torch-compile": (
        "torch.compile(lambda t, p: loss(t, p)) of losskit's reference path (preference "
        "'reference'), compiled once per loss and call kind during warm-up, torch CPU tensors"
    ),
    "optax": (
        "the optax equivalent (see OPTAX_MAPPING) under jax.jit: fwd, and fwd+bwd = "
        "jax.jit(jax.value_and_grad(...)) with respect to its prediction input; '-' where none "
        "exists (torchvision.ops.sigmoid_focal_loss, the other focal peer, does not install "
        "beside the pinned torch 2.13.0)"
    ),
}

#: The optax expression of each loss that has one.  optax's focal loss takes
#: logits: it gets ``x = log(p) - log1p(-p)`` of the same ``p`` (computed
#: before timing), so it computes the same value with the same memory traffic.
OPTAX_MAPPING = {
    "binary_focal_crossentropy": (
        "optax.losses.sigmoid_focal_loss(x, t, alpha=None, gamma=2.0).mean(), x = logit(p)"
    ),
}

#: The torch.nn.functional expression used for each loss (t = y_true, p = y_pred).
#: Only where the math equals Keras's loss with default arguments on the benchmark's
#: inputs (up to Keras's clipping by epsilon); the others have no equivalent.
TORCH_NN_MAPPING = {
    "mean_squared_error": "F.mse_loss(p, t)",
    "mean_absolute_error": "F.l1_loss(p, t)",
    "cosine_similarity": "-F.cosine_similarity(p, t, dim=-1).mean()",
    "huber_loss": "F.huber_loss(p, t, delta=1.0)",
    "kl_divergence": "F.kl_div(torch.log(p), t, reduction='batchmean')",
    "poisson": "F.poisson_nll_loss(p, t, log_input=False, eps=1e-7)",
    "binary_crossentropy": "F.binary_cross_entropy(p, t)",
    "categorical_crossentropy": "F.cross_entropy(torch.log(p), t)  (probability targets)",
    "sparse_categorical_crossentropy": "F.cross_entropy(torch.log(p), t)  (class indices)",
}

#: Why the other losses have no torch.nn.functional column.
TORCH_NN_MISSING = {
    "mean_absolute_percentage_error": "no torch.nn.functional loss",
    "mean_squared_logarithmic_error": "no torch.nn.functional loss",
    "log_cosh": "no torch.nn.functional loss",
    "dice": "no torch.nn.functional loss",
    "tversky": "no torch.nn.functional loss",
    "hinge": (
        "F.soft_margin_loss is the logistic loss log(1 + exp(-t p)) and "
        "F.hinge_embedding_loss a loss on distances, neither max(1 - t p, 0)"
    ),
    "squared_hinge": "no torch.nn.functional loss",
    "categorical_hinge": (
        "F.multi_margin_loss sums the margins of all wrong classes / C; Keras takes the largest one"
    ),
}

SPARSE = "sparse_categorical_crossentropy"
#: Losses whose targets are integer labels of shape (rows,).
LABEL_LOSSES = (SPARSE, "categorical_generalized_cross_entropy")


def torch_nn_description(name: str) -> str:
    """The torch.nn.functional expression of a loss, or ``— why there is none``."""
    if name in TORCH_NN_MAPPING:
        return TORCH_NN_MAPPING[name]
    return "— " + TORCH_NN_MISSING.get(name, "no torch.nn.functional loss")


#: How the inputs of each domain of valid inputs (``losskit.spec``) are drawn
#: here: float32, shape (rows, cols); labels for the sparse crossentropy.
DOMAIN_DESCRIPTIONS = {
    "real": "t, p ~ N(0, 1)",
    "nonzero_targets": "t ~ U(0.5, 1.5), p ~ U(0, 2)",
    "above_minus_one": "t, p ~ U(0, 2)",
    "masks": "t in {0, 1}, p ~ U(0, 1)",
    "signs": "t in {-1, 1}, p ~ N(0, 1)",
    "one_hot_scores": "t one-hot, p ~ N(0, 1)",
    "distributions": "t, p rows of probabilities (U(0.01, 1.01) normalised)",
    "counts": "t ~ U(0, 2), p ~ U(0.01, 2)",
    "binary_probabilities": "t in {0, 1}, p ~ U(0.001, 0.999)",
    "categorical_probabilities": "t one-hot, p rows of probabilities",
    "sparse_probabilities": "t int64 labels of shape (rows,), p rows of probabilities",
}


def _domain(name: str) -> str:
    """The spec's input domain of the loss with Keras name ``name`` (default
    arguments)."""
    from losskit.spec import SPECS

    spec = next(s for s in SPECS if s.keras_name == name)
    return spec.input_domain({})


def input_description(name: str) -> str:
    """How the benchmark draws the inputs of loss ``name``."""
    return DOMAIN_DESCRIPTIONS[_domain(name)]


def make_inputs(name: str, rows: int, cols: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The ``(y_true, y_pred)`` NumPy arrays of a loss: float32 ``(rows, cols)``
    (``y_true`` of the sparse crossentropy: int64 labels ``(rows,)``), drawn as
    :func:`input_description` says (by the loss's input domain in
    ``losskit.spec``), the same for a given seed in every process."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    shape = (rows, cols)

    def uniform(low: float, high: float) -> np.ndarray:
        x = rng.random(shape, dtype=np.float32)
        x *= high - low
        x += low
        return x

    def normal() -> np.ndarray:
        return rng.standard_normal(shape, dtype=np.float32)

    def binary() -> np.ndarray:
        return (rng.random(shape, dtype=np.float32) < 0.5).astype(np.float32)

    def probabilities() -> np.ndarray:
        x = uniform(0.01, 1.01)
        x /= x.sum(axis=1, keepdims=True)
        return x

    def labels() -> np.ndarray:
        return rng.integers(0, cols, rows, dtype=np.int64)

    def one_hot() -> np.ndarray:
        x = np.zeros(shape, np.float32)
        x[np.arange(rows), labels()] = 1.0
        return x

    recipes: dict[str, Callable[[], tuple[np.ndarray, np.ndarray]]] = {
        "real": lambda: (normal(), normal()),
        "nonzero_targets": lambda: (uniform(0.5, 1.5), uniform(0.0, 2.0)),
        "above_minus_one": lambda: (uniform(0.0, 2.0), uniform(0.0, 2.0)),
        "masks": lambda: (binary(), uniform(0.0, 1.0)),
        "signs": lambda: (2.0 * binary() - 1.0, normal()),
        "one_hot_scores": lambda: (one_hot(), normal()),
        "distributions": lambda: (probabilities(), probabilities()),
        "counts": lambda: (uniform(0.0, 2.0), uniform(0.01, 2.0)),
        "binary_probabilities": lambda: (binary(), uniform(0.001, 0.999)),
        "categorical_probabilities": lambda: (one_hot(), probabilities()),
        "sparse_probabilities": lambda: (labels(), probabilities()),
    }
    y_true, y_pred = recipes[_domain(name)]()
    return y_true, y_pred


def has_inputs(name: str) -> bool:
    """Whether :func:`make_inputs` can draw the inputs of loss ``name``: CTC and
    Circle take label sequences and embeddings, not ``(rows, cols)`` arrays
    (``benchmarks/ctc.py`` measures CTC on its own)."""
    return _domain(name) in DOMAIN_DESCRIPTIONS


@dataclass(frozen=True)
class WorkerSettings:
    """What a worker measures: the sizes, the losses (Keras default names) and how."""

    rows: int
    cols: int
    losses: tuple[str, ...]
    repeat: int
    budget_s: float
    seed: int = 0


# --- the columns ---------------------------------------------------------------
# Each builder gets the loss name and its NumPy inputs and returns
# {"fwd": Spec | None, "fwdbwd": Spec | None} (None: the column has no such loss).

Specs = dict[str, Spec | None]
Builder = Callable[[str, np.ndarray, np.ndarray], Specs]


def _loss_class(name: str) -> type:
    import losskit

    for info in losskit.LOSSES:
        if info.name == name:
            return info.cls
    raise ValueError(f"unknown loss {name!r}")


def _torch_inputs(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[Any, Any, Any]:
    """``t``, ``p`` (no grad) and ``p`` with ``requires_grad``, sharing the NumPy memory."""
    import torch

    t = torch.from_numpy(y_true)
    p = torch.from_numpy(y_pred)
    p_grad = torch.from_numpy(y_pred).requires_grad_(True)
    return t, p, p_grad


def _torch_specs(fn: Callable[[Any, Any], Any], y_true: np.ndarray, y_pred: np.ndarray) -> Specs:
    """fwd = ``fn(t, p)``; fwd+bwd = ``fn(t, p).backward()`` on torch CPU tensors."""
    t, p, p_grad = _torch_inputs(y_true, y_pred)

    def clear_grad() -> None:
        p_grad.grad = None

    def fwdbwd() -> Any:
        value = fn(t, p_grad)
        value.backward()
        return value

    return {
        "fwd": Spec(lambda: fn(t, p)),
        "fwdbwd": Spec(fwdbwd, prepare=clear_grad, gradient_bytes=y_pred.nbytes),
    }


def _roofline(name: str, y_true: np.ndarray, y_pred: np.ndarray) -> Specs:
    from losskit.kernels.roofline import read_pass, read_write_pass

    first = y_pred if y_true.shape != y_pred.shape else y_true.astype(np.float32, copy=False)
    out = np.empty_like(y_pred)
    return {
        "fwd": Spec(lambda: read_pass(first, y_pred), memory=False),
        "fwdbwd": Spec(lambda: read_write_pass(first, y_pred, out), memory=False),
    }


def _losskit(name: str, y_true: np.ndarray, y_pred: np.ndarray) -> Specs:
    loss = _loss_class(name)()
    specs = _torch_specs(loss, y_true, y_pred)
    specs["fwd"] = Spec(lambda: loss(y_true, y_pred), tracemalloc=True)
    return specs


def torch_nn_functions() -> dict[str, Callable[[Any, Any], Any]]:
    """``fn(t, p)`` computing each loss with torch.nn.functional, by Keras name
    (see :data:`TORCH_NN_MAPPING`)."""
    import torch
    import torch.nn.functional as F  # noqa: N812 (the mapping is written with F)

    functions: dict[str, Callable[[Any, Any], Any]] = {
        "mean_squared_error": lambda t, p: F.mse_loss(p, t),
        "mean_absolute_error": lambda t, p: F.l1_loss(p, t),
        "cosine_similarity": lambda t, p: -F.cosine_similarity(p, t, dim=-1).mean(),
        "huber_loss": lambda t, p: F.huber_loss(p, t, delta=1.0),
        "kl_divergence": lambda t, p: F.kl_div(torch.log(p), t, reduction="batchmean"),
        "poisson": lambda t, p: F.poisson_nll_loss(p, t, log_input=False, eps=1e-7),
        "binary_crossentropy": lambda t, p: F.binary_cross_entropy(p, t),
        "categorical_crossentropy": lambda t, p: F.cross_entropy(torch.log(p), t),
        SPARSE: lambda t, p: F.cross_entropy(torch.log(p), t),
    }
    assert functions.keys() == TORCH_NN_MAPPING.keys()
    return functions


def _torch_nn(name: str, y_true: np.ndarray, y_pred: np.ndarray) -> Specs:
    functions = torch_nn_functions()
    if name not in functions:
        return {"fwd": None, "fwdbwd": None}
    return _torch_specs(functions[name], y_true, y_pred)


def _torch_compile(name: str, y_true: np.ndarray, y_pred: np.ndarray) -> Specs:
    import torch

    torch._dynamo.reset()  # a fresh cache per loss: no recompilation limit, no stale graphs
    loss = _loss_class(name)()
    compiled = torch.compile(lambda t, p: loss(t, p))
    return _torch_specs(compiled, y_true, y_pred)


def _keras_jax(name: str, y_true: np.ndarray, y_pred: np.ndarray) -> Specs:
    import jax
    import jax.numpy as jnp
    import keras

    loss = getattr(keras.losses, _loss_class(name).__name__)()
    t = jnp.asarray(y_true.astype(np.int32) if name in LABEL_LOSSES else y_true)
    p = jnp.asarray(y_pred)
    forward = jax.jit(lambda t, p: loss(t, p))
    value_and_grad = jax.jit(jax.value_and_grad(lambda p, t: loss(t, p)))
    return {
        "fwd": Spec(lambda: forward(t, p).block_until_ready()),
        "fwdbwd": Spec(
            lambda: jax.block_until_ready(value_and_grad(p, t)), gradient_bytes=y_pred.nbytes
        ),
    }


def _keras_torch(name: str, y_true: np.ndarray, y_pred: np.ndarray) -> Specs:
    import keras

    loss = getattr(keras.losses, _loss_class(name).__name__)()
    return _torch_specs(loss, y_true, y_pred)


def _optax(name: str, y_true: np.ndarray, y_pred: np.ndarray) -> Specs:
    if name not in OPTAX_MAPPING:
        return {"fwd": None, "fwdbwd": None}
    import jax
    import jax.numpy as jnp
    import optax

    def focal(x: Any, t: Any) -> Any:
        return optax.losses.sigmoid_focal_loss(x, t, alpha=None, gamma=2.0).mean()

    t = jnp.asarray(y_true)
    x = jnp.asarray(np.log(y_pred) - np.log1p(-y_pred))
    forward = jax.jit(focal)
    value_and_grad = jax.jit(jax.value_and_grad(focal))
    return {
        "fwd": Spec(lambda: forward(x, t).block_until_ready()),
        "fwdbwd": Spec(
            lambda: jax.block_until_ready(value_and_grad(x, t)), gradient_bytes=y_pred.nbytes
        ),
    }


BUILDERS: dict[str, Builder] = {
    "roofline": _roofline,
    "losskit": _losskit,
    "reference": _losskit,
    "keras-jax": _keras_jax,
    "keras-torch": _keras_torch,
    "torch-nn": _torch_nn,
    "torch-compile": _torch_compile,
    "optax": _optax,
}
PREFERENCES = {"losskit": "fast", "reference": "reference", "torch-compile": "reference"}


def roofline_repeat(repeat: int) -> int:
    """Timed calls of a roofline pass: more than a loss gets, as they are cheap and the
    bound should be steady."""
    return max(20, 4 * repeat)


def measure_roofline(spec: Spec, repeat: int, budget_s: float) -> dict[str, Any]:
    """Measure a roofline pass with every Numba thread count from 1 to the default,
    and return the fastest (by minimum), with all of them under ``by_threads``.

    The bound is the fastest pass the machine manages: on a small machine shared
    with other work, one thread can beat a parallel pass that waits for a thread
    the OS has descheduled.
    """
    import numba

    default = numba.get_num_threads()
    by_threads: dict[str, dict[str, Any]] = {}
    try:
        for threads in range(1, default + 1):
            numba.set_num_threads(threads)
            by_threads[str(threads)] = measure(spec, repeat, budget_s)
    finally:
        numba.set_num_threads(default)
    best = min(by_threads, key=lambda k: by_threads[k]["min_s"])
    return {**by_threads[best], "threads": int(best), "by_threads": by_threads}


def _threads() -> dict[str, int]:
    threads: dict[str, int] = {}
    if "torch" in sys.modules:
        threads["torch"] = sys.modules["torch"].get_num_threads()
    if "numba" in sys.modules:
        threads["numba"] = sys.modules["numba"].get_num_threads()
    return threads


def _error(error: BaseException) -> dict[str, str]:
    return {"error": f"{type(error).__name__}: {error}"}


def run_worker(
    column: str, settings: WorkerSettings, log: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Measure every loss of ``settings`` in one column; JSON-able results.

    Returns ``{"column", "threads", "elapsed_s", "results": {loss: {"fwd": m,
    "fwdbwd": m}}}`` where ``m`` is :func:`_measure.measure`'s dict, ``None``
    (the column has no such loss) or ``{"error": message}``.
    """
    if column not in BUILDERS:
        raise ValueError(f"unknown column {column!r}; expected one of {', '.join(BUILDERS)}")
    if column in KERAS_BACKENDS:
        import keras

        if keras.backend.backend() != KERAS_BACKENDS[column]:
            raise RuntimeError(
                f"{column} needs KERAS_BACKEND={KERAS_BACKENDS[column]} in its process; "
                f"Keras runs on {keras.backend.backend()!r}"
            )
    import losskit

    started = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    preference = PREFERENCES.get(column, "fast")
    repeat = roofline_repeat(settings.repeat) if column == "roofline" else settings.repeat
    with losskit.prefer_backend(preference), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Dynamo's and Keras's chatter
        for name in settings.losses:
            loss_started = time.perf_counter()
            y_true, y_pred = make_inputs(name, settings.rows, settings.cols, settings.seed)
            try:
                specs = BUILDERS[column](name, y_true, y_pred)
            except Exception as error:
                results[name] = {"fwd": _error(error), "fwdbwd": _error(error)}
            else:
                results[name] = {}
                for kind in ("fwd", "fwdbwd"):
                    spec = specs.get(kind)
                    measured: dict[str, Any] | None = None
                    if spec is not None:
                        try:
                            measured = (measure_roofline if column == "roofline" else measure)(
                                spec, repeat, settings.budget_s
                            )
                        except Exception as error:
                            measured = _error(error)
                    results[name][kind] = measured
                del specs
            del y_true, y_pred
            gc.collect()
            if log is not None:
                log(f"  {column:<13} {name:<32} {time.perf_counter() - loss_started:6.1f} s")
    return {
        "column": column,
        "preference": preference if column in PREFERENCES else None,
        "threads": _threads(),
        "elapsed_s": time.perf_counter() - started,
        "results": results,
    }
