"""Per-call cost at training batch sizes: losskit against the library's own loss.

A loss is called once per training step on a small batch, where the time goes
to dispatch and conversion rather than arithmetic.  For every loss of
``losskit.LOSSES`` (class with default arguments, default reduction), on
float32 inputs of each shape, this prints the mean time of one call in
microseconds, one torch thread:

- ``torch f+b``: ``loss(t, p).backward()`` on CPU tensors, against the
  torch.nn.functional equivalent where one exists (``benchmarks/_peers.py``);
- ``torch no_grad``: the forward alone under ``torch.no_grad()``;
- ``numpy``: the forward on NumPy arrays;
- ``jax``: the forward on JAX arrays called eagerly, against the same loss
  inside ``jax.jit`` written by the user.

Usage (the ``bench`` extra)::

    .venv/bin/python benchmarks/training_loop.py                  # all losses, 3 shapes
    .venv/bin/python benchmarks/training_loop.py --losses mse,huber --calls 500
    .venv/bin/python benchmarks/training_loop.py --json benchmarks/results/training_loop.json

Timings only; correctness is the test suite's job.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
from _peers import make_inputs, torch_nn_functions  # noqa: E402

SHAPES = ((32, 10), (256, 10), (1024, 100))


def per_call_us(call: Callable[[], Any], calls: int, rounds: int = 5) -> float:
    """The median over ``rounds`` of the mean time of ``calls`` calls, in µs."""
    for _ in range(max(10, calls // 10)):
        call()
    means = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        means.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(means)


def measure_loss(name: str, shape: tuple[int, int], calls: int) -> dict[str, float | None]:
    import torch

    import losskit

    cls = next(info.cls for info in losskit.LOSSES if info.name == name)
    loss = cls()
    y_true, y_pred = make_inputs(name, *shape)
    t, p = torch.from_numpy(y_true), torch.from_numpy(y_pred)
    p_grad = p.clone().requires_grad_()
    native = torch_nn_functions().get(name)

    def backward(fn: Callable[[Any, Any], Any]) -> Callable[[], None]:
        def call() -> None:
            p_grad.grad = None
            fn(t, p_grad).backward()

        return call

    def no_grad(fn: Callable[[Any, Any], Any]) -> Callable[[], Any]:
        def call() -> Any:
            with torch.no_grad():
                return fn(t, p)

        return call

    import jax
    import jax.numpy as jnp

    jt, jp = jnp.asarray(y_true), jnp.asarray(y_pred)
    jitted = jax.jit(lambda a, b: loss(a, b))

    result: dict[str, float | None] = {
        "jax_eager": per_call_us(lambda: loss(jt, jp).block_until_ready(), calls),
        "jax_jit": per_call_us(lambda: jitted(jt, jp).block_until_ready(), calls),
        "torch_fb": per_call_us(backward(loss), calls),
        "torch_fb_native": None if native is None else per_call_us(backward(native), calls),
        "torch_nograd": per_call_us(no_grad(loss), calls),
        "torch_nograd_native": None if native is None else per_call_us(no_grad(native), calls),
        "numpy": per_call_us(lambda: loss(y_true, y_pred), calls),
    }
    return result


def _ratio(ours: float | None, theirs: float | None) -> str:
    return "—" if ours is None or theirs is None else f"{ours / theirs:.2f}"


def main(argv: list[str] | None = None) -> int:
    import torch

    import losskit

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--losses", default="all", help="comma-separated Keras names, or all")
    parser.add_argument("--calls", type=int, default=300, help="calls per timing round")
    parser.add_argument("--json", help="also write the results here")
    options = parser.parse_args(argv)
    torch.set_num_threads(1)
    names = [info.name for info in losskit.LOSSES]
    if options.losses != "all":
        names = [n.strip() for n in options.losses.split(",")]
    print(
        f"machine: {platform.machine()} {platform.processor() or ''}, python "
        f"{platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}, "
        f"losskit {losskit.__version__}; torch threads: 1; float32; µs per call"
    )
    header = (
        f"{'loss':32} {'shape':>10} {'torch f+b':>10} {'native':>8} {'ratio':>6} "
        f"{'no_grad':>8} {'native':>8} {'ratio':>6} {'numpy':>8} {'jax':>7} {'jit':>7}"
    )
    print(header)
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        for shape in SHAPES:
            row = measure_loss(name, shape, options.calls)
            results.setdefault(name, {})[f"{shape[0]}x{shape[1]}"] = row
            native_fb, native_ng = row["torch_fb_native"], row["torch_nograd_native"]
            print(
                f"{name:32} {f'{shape[0]}x{shape[1]}':>10} {row['torch_fb']:10.1f} "
                f"{'—' if native_fb is None else f'{native_fb:.1f}':>8} "
                f"{_ratio(row['torch_fb'], native_fb):>6} {row['torch_nograd']:8.1f} "
                f"{'—' if native_ng is None else f'{native_ng:.1f}':>8} "
                f"{_ratio(row['torch_nograd'], native_ng):>6} {row['numpy']:8.1f} "
                f"{row['jax_eager']:7.1f} {row['jax_jit']:7.1f}"
            )
    if options.json:
        document = {"command": " ".join(sys.argv), "results": results}
        Path(options.json).write_text(json.dumps(document, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
