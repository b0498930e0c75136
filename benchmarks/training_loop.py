"""Per-call cost at training batch sizes: losskit against the library's own loss.

A loss is called once per training step on a small batch, where the time goes
to dispatch and conversion rather than arithmetic.  For each loss (the class
with default arguments, plus the crossentropies ``from_logits=True``; default
reduction) on float32 inputs of each shape, without weights and with
per-sample weights, this prints the mean time of one call in microseconds,
one torch thread, and the ratio to the peer of issue 10's targets:

- ``torch f+b``: ``loss(t, p).backward()`` on CPU tensors, against the
  torch.nn.functional equivalent where one exists (``benchmarks/_peers.py``'s
  mapping, and ``binary_cross_entropy_with_logits``/``cross_entropy`` for the
  logits variants), else against the formula written by hand in torch;
- ``no_grad``: the forward alone under ``torch.no_grad()``, same peers;
- ``numpy``: the forward on NumPy arrays, against the formula written by
  hand in NumPy;
- ``jax``: the forward on JAX arrays called eagerly, against the same loss
  inside a ``jax.jit`` written by the user;
- ``keras``: ``keras.losses.<Class>()(t, p).backward()`` on Keras 3 with the
  torch backend (its own process; ``--no-keras`` leaves it out).

Weighted peers apply the weights to the per-sample losses of the same
expressions and take the mean.  Dice and Tversky have one loss per batch:
no weighted columns.

Usage (the ``bench`` extra)::

    .venv/bin/python benchmarks/training_loop.py                  # all, 3 shapes
    .venv/bin/python benchmarks/training_loop.py --losses mean_squared_error --calls 100
    .venv/bin/python benchmarks/training_loop.py --json benchmarks/results/training_loop.json

``--crossover`` instead times, on torch CPU tensors of 100 columns and
growing batches, the losses that torch computes in one fused operation (MSE,
Huber, the crossentropies from logits) through losskit's fused Numba kernel
and through torch's own loss: where the kernel starts to win is the
threshold in ``losskit/_torch_native.py`` below which the native loss goes
first.

Timings only; correctness is the test suite's job.  Each time is the least
of 7 rounds (the round other processes disturbed least).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
from _peers import make_inputs  # noqa: E402

SHAPES = ((32, 10), (256, 10), (1024, 100))
EPS = 1e-7


def per_call_us(call: Callable[[], Any], calls: int, rounds: int = 7) -> float:
    """The least over ``rounds`` of the mean wall time of ``calls`` calls, in
    µs: on a shared machine, the round least disturbed by other processes."""
    for _ in range(max(10, calls // 10)):
        call()
    means = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        means.append((time.perf_counter() - start) / calls * 1e6)
    return min(means)


# --- the hand-written formulas: ``m`` is numpy or torch ---------------------------


def _floor(m: Any, x: Any, low: float) -> Any:
    return np.maximum(x, low) if m is np else x.clamp(min=low)


def _clip(m: Any, x: Any, low: float, high: float) -> Any:
    return np.clip(x, low, high) if m is np else x.clamp(low, high)


def _amax(m: Any, x: Any) -> Any:
    return np.max(x, axis=-1) if m is np else x.amax(-1)


def _sum(m: Any, x: Any, keepdims: bool = False) -> Any:
    return np.sum(x, axis=-1, keepdims=keepdims) if m is np else x.sum(-1, keepdim=keepdims)


def _logaddexp0(m: Any, x: Any) -> Any:
    return np.logaddexp(x, 0.0) if m is np else m.logaddexp(x, m.zeros_like(x))


def _huber(m: Any, t: Any, p: Any) -> Any:
    error = m.abs(p - t)
    quadratic = _clip(m, error, 0.0, 1.0)
    return 0.5 * quadratic * quadratic + (error - quadratic)


def _signs(m: Any, t: Any) -> Any:
    return m.where(m.all((t == 0) | (t == 1)), 2 * t - 1, t)


def _normalized(m: Any, x: Any) -> Any:
    return x / m.sqrt(_floor(m, _sum(m, x * x, keepdims=True), EPS * EPS))


def _log_softmax(m: Any, x: Any) -> Any:
    if m is not np:
        return x.log_softmax(-1)
    shifted = x - np.max(x, axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def _log_probabilities(m: Any, p: Any) -> Any:
    return m.log(_clip(m, p / _sum(m, p, keepdims=True), EPS, 1 - EPS))


def _pick(m: Any, x: Any, labels: Any) -> Any:
    if m is np:
        return x[np.arange(x.shape[0]), labels]
    return x.gather(-1, labels[:, None])[:, 0]


Formula = Callable[[Any, Any, Any], Any]
# Elementwise terms (the loss is their mean over the last axis) ...
ELEMENTWISE: dict[str, Formula] = {
    "mean_squared_error": lambda m, t, p: m.square(t - p),
    "mean_absolute_error": lambda m, t, p: m.abs(t - p),
    "mean_absolute_percentage_error": lambda m, t, p: (
        100 * m.abs((t - p) / _floor(m, m.abs(t), EPS))
    ),
    "mean_squared_logarithmic_error": lambda m, t, p: m.square(
        m.log(_floor(m, p, EPS) + 1) - m.log(_floor(m, t, EPS) + 1)
    ),
    "huber_loss": _huber,
    "log_cosh": lambda m, t, p: (p - t) + _logaddexp0(m, -2 * (p - t)) - math.log(2),
    "hinge": lambda m, t, p: _floor(m, 1 - _signs(m, t) * p, 0.0),
    "squared_hinge": lambda m, t, p: m.square(_floor(m, 1 - _signs(m, t) * p, 0.0)),
    "poisson": lambda m, t, p: p - t * m.log(p + EPS),
    "binary_crossentropy": lambda m, t, p: (
        -(t * m.log(_clip(m, p, EPS, 1 - EPS)) + (1 - t) * m.log(1 - _clip(m, p, EPS, 1 - EPS)))
    ),
    "binary_crossentropy(from_logits)": lambda m, t, p: (
        t * _logaddexp0(m, -p) + (1 - t) * _logaddexp0(m, p)
    ),
}
# ... per-row losses ...
ROWS: dict[str, Formula] = {
    "cosine_similarity": lambda m, t, p: -_sum(m, _normalized(m, t) * _normalized(m, p)),
    "categorical_hinge": lambda m, t, p: _floor(m, _amax(m, (1 - t) * p) - _sum(m, t * p) + 1, 0.0),
    "kl_divergence": lambda m, t, p: _sum(
        m, _clip(m, t, EPS, 1) * m.log(_clip(m, t, EPS, 1) / _clip(m, p, EPS, 1))
    ),
    "categorical_crossentropy": lambda m, t, p: -_sum(m, t * _log_probabilities(m, p)),
    "categorical_crossentropy(from_logits)": lambda m, t, p: -_sum(m, t * _log_softmax(m, p)),
    "sparse_categorical_crossentropy": lambda m, t, p: -_pick(m, _log_probabilities(m, p), t),
    "sparse_categorical_crossentropy(from_logits)": lambda m, t, p: (
        -_pick(m, _log_softmax(m, p), t)
    ),
}
# ... and one loss per batch.
GLOBAL: dict[str, Formula] = {
    "dice": lambda m, t, p: 1 - 2 * m.sum(t * p) / (m.sum(t) + m.sum(p) + EPS),
    "tversky": lambda m, t, p: (
        1
        - m.sum(t * p) / (m.sum(t * p) + 0.5 * m.sum((1 - t) * p) + 0.5 * m.sum(t * (1 - p)) + EPS)
    ),
}


def hand_written(name: str, m: Any) -> tuple[Callable[..., Any], Callable[..., Any] | None]:
    """The formula of loss ``name`` in library ``m``: ``fn(t, p)`` and the
    per-sample weighted ``fn(t, p, w)`` (None for one loss per batch)."""
    if name in GLOBAL:
        return (lambda t, p: GLOBAL[name](m, t, p)), None
    if name in ELEMENTWISE:
        terms = ELEMENTWISE[name]
        return (
            lambda t, p: terms(m, t, p).mean(),
            lambda t, p, w: (terms(m, t, p).mean(-1) * w).mean(),
        )
    rows = ROWS[name]
    return (lambda t, p: rows(m, t, p).mean()), (lambda t, p, w: (rows(m, t, p) * w).mean())


def torch_native(name: str) -> tuple[str, Callable[..., Any], Callable[..., Any]] | None:
    """Issue 10's torch.nn.functional peer of loss ``name``: its expression,
    ``fn(t, p)`` and the per-sample weighted ``fn(t, p, w)``; None if none."""
    import torch
    from torch.nn import functional

    log = torch.log
    natives: dict[str, tuple[str, Callable[..., Any]]] = {
        "mean_squared_error": ("F.mse_loss(p, t)", functional.mse_loss),
        "mean_absolute_error": ("F.l1_loss(p, t)", functional.l1_loss),
        "huber_loss": ("F.huber_loss(p, t)", functional.huber_loss),
        "poisson": (
            "F.poisson_nll_loss(p, t, log_input=False, eps=1e-7)",
            lambda p, t, reduction="mean": functional.poisson_nll_loss(
                p, t, log_input=False, eps=EPS, reduction=reduction
            ),
        ),
        "binary_crossentropy": ("F.binary_cross_entropy(p, t)", functional.binary_cross_entropy),
        "binary_crossentropy(from_logits)": (
            "F.binary_cross_entropy_with_logits(p, t)",
            functional.binary_cross_entropy_with_logits,
        ),
        "kl_divergence": (
            "F.kl_div(log(p), t, reduction='batchmean')",
            lambda p, t, reduction="mean": (
                functional.kl_div(log(p), t, reduction="batchmean")
                if reduction == "mean"
                else functional.kl_div(log(p), t, reduction="none").sum(-1)
            ),
        ),
        "cosine_similarity": (
            "-F.cosine_similarity(p, t, dim=-1).mean()",
            lambda p, t, reduction="mean": (
                -functional.cosine_similarity(p, t, dim=-1).mean()
                if reduction == "mean"
                else -functional.cosine_similarity(p, t, dim=-1)
            ),
        ),
        "categorical_crossentropy": (
            "F.cross_entropy(log(p), t)",
            lambda p, t, reduction="mean": functional.cross_entropy(log(p), t, reduction=reduction),
        ),
        "categorical_crossentropy(from_logits)": (
            "F.cross_entropy(p, t)",
            functional.cross_entropy,
        ),
        "sparse_categorical_crossentropy": (
            "F.cross_entropy(log(p), t)",
            lambda p, t, reduction="mean": functional.cross_entropy(log(p), t, reduction=reduction),
        ),
        "sparse_categorical_crossentropy(from_logits)": (
            "F.cross_entropy(p, t)",
            functional.cross_entropy,
        ),
    }
    if name not in natives:
        return None
    expression, fn = natives[name]

    def weighted(t: Any, p: Any, w: Any) -> Any:
        values = fn(p, t, reduction="none")
        return ((values.mean(-1) if values.ndim == 2 else values) * w).mean()

    return expression, (lambda t, p: fn(p, t)), weighted


# --- the losses ---------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    name: str  # the Keras name, with "(from_logits)" for the logits variants
    keras_name: str
    class_name: str
    kwargs: dict[str, Any]

    @property
    def logits(self) -> bool:
        return bool(self.kwargs.get("from_logits"))


def variants(selected: str) -> list[Variant]:
    import losskit

    found = []
    for info in losskit.LOSSES:
        if info.name in ELEMENTWISE or info.name in ROWS or info.name in GLOBAL:
            found.append(Variant(info.name, info.name, info.cls.__name__, {}))
            if f"{info.name}(from_logits)" in ELEMENTWISE | ROWS:
                logits = f"{info.name}(from_logits)"
                found.append(Variant(logits, info.name, info.cls.__name__, {"from_logits": True}))
    if selected != "all":
        names = {n.strip() for n in selected.split(",")}
        found = [v for v in found if v.name in names or v.keras_name in names]
    return found


def inputs(variant: Variant, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y_true, y_pred = make_inputs(variant.keras_name, *shape)
    if variant.logits:
        y_pred = np.random.default_rng(1).standard_normal(shape, dtype=np.float32)
    weights = np.random.default_rng(2).random(shape[0], dtype=np.float32)
    return y_true, y_pred, weights


def measure(variant: Variant, shape: tuple[int, int], calls: int) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp
    import torch

    import losskit

    loss = getattr(losskit, variant.class_name)(**variant.kwargs)
    y_true, y_pred, weights = inputs(variant, shape)
    t, p, w = torch.from_numpy(y_true), torch.from_numpy(y_pred), torch.from_numpy(weights)
    p_grad = p.clone().requires_grad_()
    native = torch_native(variant.name)
    if native is not None:
        peer, torch_peer, torch_peer_w = native
    else:
        peer = "hand-written torch formula"
        torch_peer, torch_peer_w = hand_written(variant.name, torch)  # type: ignore[assignment]
    numpy_peer, numpy_peer_w = hand_written(variant.name, np)
    weighted = numpy_peer_w is not None

    def backward(fn: Callable[..., Any], *extra: Any) -> Callable[[], None]:
        def call() -> None:
            p_grad.grad = None
            fn(t, p_grad, *extra).backward()

        return call

    def no_grad(fn: Callable[..., Any], *extra: Any) -> Callable[[], Any]:
        def call() -> Any:
            with torch.no_grad():
                return fn(t, p, *extra)

        return call

    jt, jp, jw = jnp.asarray(y_true), jnp.asarray(y_pred), jnp.asarray(weights)
    jitted = jax.jit(lambda a, b: loss(a, b))
    jitted_w = jax.jit(lambda a, b, c: loss(a, b, c))
    row: dict[str, Any] = {"peer": peer}
    timings: dict[str, Callable[[], Any]] = {
        "torch_fb": backward(loss),
        "torch_fb_peer": backward(torch_peer),
        "torch_nograd": no_grad(loss),
        "torch_nograd_peer": no_grad(torch_peer),
        "numpy": lambda: loss(y_true, y_pred),
        "numpy_peer": lambda: numpy_peer(y_true, y_pred),
        "jax_eager": lambda: loss(jt, jp).block_until_ready(),
        "jax_jit": lambda: jitted(jt, jp).block_until_ready(),
    }
    if weighted:
        timings |= {
            "torch_fb_w": backward(loss, w),
            "torch_fb_w_peer": backward(torch_peer_w, w),
            "torch_nograd_w": no_grad(loss, w),
            "torch_nograd_w_peer": no_grad(torch_peer_w, w),
            "numpy_w": lambda: loss(y_true, y_pred, weights),
            "numpy_w_peer": lambda: numpy_peer_w(y_true, y_pred, weights),
            "jax_eager_w": lambda: loss(jt, jp, jw).block_until_ready(),
            "jax_jit_w": lambda: jitted_w(jt, jp, jw).block_until_ready(),
        }
    for key, call in timings.items():
        row[key] = per_call_us(call, calls)
    return row


KERAS_SCRIPT = """
import json, sys
import numpy as np, torch, keras
sys.path.insert(0, {here!r})
from training_loop import inputs, per_call_us, Variant
torch.set_num_threads(1)
results = {{}}
for name, keras_name, class_name, kwargs, shape in json.loads(sys.argv[1]):
    variant = Variant(name, keras_name, class_name, kwargs)
    y_true, y_pred, weights = inputs(variant, tuple(shape))
    loss = getattr(keras.losses, class_name)(**kwargs)
    t, p = torch.from_numpy(y_true), torch.from_numpy(y_pred).requires_grad_()
    def call():
        p.grad = None
        loss(t, p).backward()
    results[f"{{name}} {{shape[0]}}x{{shape[1]}}"] = per_call_us(call, {calls})
print(json.dumps(results))
"""


def keras_torch(jobs: list[tuple[Variant, tuple[int, int]]], calls: int) -> dict[str, float]:
    """Keras 3 on the torch backend, f+b per (variant, shape), in its own process."""
    arguments = [(v.name, v.keras_name, v.class_name, v.kwargs, s) for v, s in jobs]
    environment = dict(os.environ, KERAS_BACKEND="torch")
    script = KERAS_SCRIPT.format(here=str(HERE), calls=calls)
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(arguments)],
        capture_output=True,
        text=True,
        env=environment,
        check=False,
    )
    if done.returncode != 0:
        print(f"keras-torch column failed: {done.stderr[-2000:]}", file=sys.stderr)
        return {}
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _ratio(ours: float | None, theirs: float | None) -> str:
    return "—" if ours is None or theirs is None else f"{ours / theirs:.2f}"


def _kernel_call(loss: Any, t: Any, p: Any) -> None:
    import losskit

    with losskit.prefer_backend("fast"):
        losskit.kernels.fused_call(loss, t, p, None, None).backward()


def _native_call(native: Callable[..., Any], t: Any, p: Any) -> None:
    native(p, t).backward()


CROSSOVER_ROWS = (1024, 2048, 4096, 8192, 16384, 32768)


def crossover(calls: int) -> None:
    """Forward+backward per call of the fused Numba kernel and of torch's own
    loss, (rows, 100) float32, one torch thread (the kernels use every core)."""
    import torch
    from torch.nn import functional

    import losskit

    cases = {
        "mean_squared_error": (losskit.MeanSquaredError(), functional.mse_loss),
        "huber_loss": (losskit.Huber(), functional.huber_loss),
        "sparse_categorical_crossentropy(from_logits)": (
            losskit.SparseCategoricalCrossentropy(from_logits=True),
            lambda p, t: functional.cross_entropy(p, t),
        ),
    }
    print(f"{'loss':45} {'shape':>10} {'kernel':>8} {'torch':>8} {'x':>5}")
    rng = np.random.default_rng(0)
    for name, (loss, native) in cases.items():
        for rows in CROSSOVER_ROWS:
            p = torch.from_numpy(rng.standard_normal((rows, 100), dtype=np.float32))
            p.requires_grad_()
            if "sparse" in name:
                t = torch.from_numpy(rng.integers(0, 100, rows))
            else:
                t = torch.from_numpy(rng.standard_normal((rows, 100), dtype=np.float32))

            ours = per_call_us(functools.partial(_kernel_call, loss, t, p), calls)
            theirs = per_call_us(functools.partial(_native_call, native, t, p), calls)
            print(f"{name:45} {f'{rows}x100':>10} {ours:8.1f} {theirs:8.1f} {ours / theirs:5.2f}")


def _us(value: float) -> str:
    return f"{value:.2g}" if value < 10 else f"{value:.0f}"


def _cell(ours: float | None, theirs: float | None) -> str:
    if not ours:
        return "—"
    return f"{_us(ours)} ({_us(theirs)}, {ours / theirs:.2f}x)" if theirs else _us(ours)


def markdown(document: dict[str, Any]) -> str:
    """The README's training-loop table from a ``--json`` file."""
    lines = [
        "| loss | shape | torch f+b (peer, ratio) | f+b, weights | no_grad | "
        "NumPy (hand-written) | NumPy, weights | JAX eager (jit) | Keras on torch f+b |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, shapes in document["results"].items():
        for shape, row in shapes.items():
            g = row.get
            keras = g("keras_torch_fb")
            cells = [
                _cell(g("torch_fb"), g("torch_fb_peer")),
                _cell(g("torch_fb_w"), g("torch_fb_w_peer")),
                _cell(g("torch_nograd"), g("torch_nograd_peer")),
                _cell(g("numpy"), g("numpy_peer")),
                _cell(g("numpy_w"), g("numpy_w_peer")),
                _cell(g("jax_eager"), g("jax_jit")),
                f"{keras:.0f}" if keras else "—",
            ]
            lines.append(f"| {name} | {shape.replace('x', ' x ')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import jax
    import torch

    import losskit

    jax.config.update("jax_platforms", "cpu")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--losses", default="all", help="comma-separated names, or all")
    parser.add_argument("--calls", type=int, default=200, help="calls per timing round")
    parser.add_argument("--no-keras", action="store_true", help="leave out Keras on torch")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument(
        "--crossover", action="store_true", help="kernel against torch's fused loss by size"
    )
    parser.add_argument("--markdown", help="print the README table of this --json file, and stop")
    options = parser.parse_args(argv)
    if options.markdown:
        print(markdown(json.loads(Path(options.markdown).read_text())))
        return 0
    torch.set_num_threads(1)
    if options.crossover:
        crossover(max(options.calls // 10, 5))
        return 0
    machine = (
        f"{platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, python "
        f"{platform.python_version()}, torch {torch.__version__}, jax {jax.__version__}, "
        f"numpy {np.__version__}, losskit {losskit.__version__}"
    )
    print(f"machine: {machine}; torch threads: 1; float32; µs per call")
    header = (
        f"{'loss':45} {'shape':>8} {'f+b':>7} {'peer':>7} {'x':>5} {'f+b w':>7} {'x':>5} "
        f"{'no_grad':>7} {'x':>5} {'numpy':>7} {'x':>5} {'np w':>7} {'x':>5} "
        f"{'jax':>6} {'x':>5}"
    )
    print(header)
    results: dict[str, dict[str, Any]] = {}
    jobs = [(v, shape) for v in variants(options.losses) for shape in SHAPES]
    for variant, shape in jobs:
        row = measure(variant, shape, options.calls)
        results.setdefault(variant.name, {})[f"{shape[0]}x{shape[1]}"] = row
        g = row.get
        print(
            f"{variant.name:45} {f'{shape[0]}x{shape[1]}':>8} {row['torch_fb']:7.1f} "
            f"{row['torch_fb_peer']:7.1f} {_ratio(g('torch_fb'), g('torch_fb_peer')):>5} "
            f"{g('torch_fb_w') or 0:7.1f} {_ratio(g('torch_fb_w'), g('torch_fb_w_peer')):>5} "
            f"{row['torch_nograd']:7.1f} {_ratio(g('torch_nograd'), g('torch_nograd_peer')):>5} "
            f"{row['numpy']:7.1f} {_ratio(g('numpy'), g('numpy_peer')):>5} "
            f"{g('numpy_w') or 0:7.1f} {_ratio(g('numpy_w'), g('numpy_w_peer')):>5} "
            f"{row['jax_eager']:6.1f} {_ratio(g('jax_eager'), g('jax_jit')):>5}",
            flush=True,
        )
    if not options.no_keras:
        keras = keras_torch(jobs, options.calls)
        for variant, shape in jobs:
            key = f"{shape[0]}x{shape[1]}"
            results[variant.name][key]["keras_torch_fb"] = keras.get(f"{variant.name} {key}")
    if options.json:
        document = {
            "command": "benchmarks/training_loop.py " + " ".join(sys.argv[1:]),
            "machine": machine,
            "note": "µs per call, least of 7 rounds; peers: see the "
            "module docstring ('peer' names the torch one)",
            "results": results,
        }
        Path(options.json).write_text(json.dumps(document, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
