"""CTC on the CPU: losskit against torch.nn.functional.ctc_loss, optax and Keras.

All columns compute the same thing: Keras's ``CTC()`` with its default
reduction (the mean over the batch of the per-sequence losses), blank 0,
every sequence using all ``time`` steps and label lengths counted as the
non-zero labels; the values are printed beside the timings and must agree.
Inputs: float32 logits ``(batch, time, classes)`` drawn from N(0, 2^2),
labels ``(batch, labels)`` in [1, classes) with random lengths padded by 0.

- ``losskit numpy``: the forward on NumPy arrays (a Python loop over time);
- ``losskit torch``: forward, and forward+backward through autograd;
- ``losskit jax``: the eager call (losskit runs it as one cached ``jax.jit``
  function, the time recursion as ``lax.scan``) and ``jax.jit(value_and_grad)``;
- ``torch.nn.functional``: ``log_softmax`` then ``ctc_loss(reduction="none").mean()``;
- ``optax``: ``optax.ctc_loss(...).mean()`` under ``jax.jit``;
- ``keras (jax)``: ``keras.losses.CTC()`` under ``jax.jit``.

Usage (the ``bench`` extra, plus optax for its column)::

    .venv/bin/python benchmarks/ctc.py        # batch 16, time 100, classes 30, labels 30
    .venv/bin/python benchmarks/ctc.py --batch 64 --time 200 --json /tmp/ctc.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402
from _measure import Spec, time_call, to_float  # noqa: E402

Column = tuple[str, str, Callable[[], Spec] | None]


def make_inputs(
    batch: int, time: int, classes: int, labels: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y_pred = (rng.standard_normal((batch, time, classes)) * 2.0).astype(np.float32)
    values = rng.integers(1, classes, size=(batch, labels))
    lengths = rng.integers(1, labels + 1, size=(batch, 1))
    return np.where(np.arange(labels) < lengths, values, 0).astype(np.int64), y_pred


def _torch_backward(loss: Callable[[Any, Any], Any], t: Any, p_np: np.ndarray) -> Spec:
    import torch

    p = torch.tensor(p_np, requires_grad=True)

    def prepare() -> None:
        p.grad = None

    def call() -> Any:
        value = loss(t, p)
        value.backward()
        return value.detach()

    return Spec(call, prepare=prepare, gradient_bytes=p_np.nbytes, memory=False)


def columns(y_true: np.ndarray, y_pred: np.ndarray) -> list[Column]:
    import jax
    import jax.numpy as jnp
    import keras
    import torch

    import losskit

    loss = losskit.CTC()
    t_torch, p_torch = torch.as_tensor(y_true), torch.as_tensor(y_pred)
    t_jax, p_jax = jnp.asarray(y_true), jnp.asarray(y_pred)
    batch, time = y_pred.shape[:2]

    def torch_nn(t: Any, p: Any) -> Any:
        log_probs = torch.log_softmax(p, dim=-1).transpose(0, 1)
        return torch.nn.functional.ctc_loss(
            log_probs,
            t,
            input_lengths=torch.full((batch,), time, dtype=torch.int64),
            target_lengths=(t != 0).sum(dim=1),
            blank=0,
            reduction="none",
        ).mean()

    jax_grad = jax.jit(jax.value_and_grad(lambda p: loss(t_jax, p)))
    keras_loss = keras.losses.CTC()
    keras_fwd = jax.jit(lambda t, p: keras_loss(t, p))
    keras_grad = jax.jit(jax.value_and_grad(lambda p: keras_loss(t_jax, p)))
    result: list[Column] = [
        ("losskit numpy", "fwd", lambda: Spec(lambda: loss(y_true, y_pred), memory=False)),
        ("losskit torch", "fwd", lambda: Spec(lambda: loss(t_torch, p_torch), memory=False)),
        ("losskit torch", "fwd+bwd", lambda: _torch_backward(loss, t_torch, y_pred)),
        (
            "losskit jax",
            "fwd",
            lambda: Spec(lambda: loss(t_jax, p_jax).block_until_ready(), memory=False),
        ),
        ("losskit jax", "fwd+bwd", lambda: _jax_spec(jax_grad, p_jax)),
        (
            "torch.nn.functional",
            "fwd",
            lambda: Spec(lambda: torch_nn(t_torch, p_torch), memory=False),
        ),
        ("torch.nn.functional", "fwd+bwd", lambda: _torch_backward(torch_nn, t_torch, y_pred)),
        (
            "keras (jax)",
            "fwd",
            lambda: Spec(lambda: keras_fwd(t_jax, p_jax).block_until_ready(), memory=False),
        ),
        ("keras (jax)", "fwd+bwd", lambda: _jax_spec(keras_grad, p_jax)),
    ]
    try:
        import optax
    except ImportError:
        result += [("optax", "fwd", None), ("optax", "fwd+bwd", None)]
        return result
    padding = jnp.asarray((y_true == 0).astype(np.float32))
    no_padding = jnp.zeros((batch, time), jnp.float32)

    def optax_loss(p: Any) -> Any:
        return optax.ctc_loss(p, no_padding, t_jax, padding, blank_id=0).mean()

    optax_fwd, optax_grad = jax.jit(optax_loss), jax.jit(jax.value_and_grad(optax_loss))
    result += [
        ("optax", "fwd", lambda: Spec(lambda: optax_fwd(p_jax).block_until_ready(), memory=False)),
        ("optax", "fwd+bwd", lambda: _jax_spec(optax_grad, p_jax)),
    ]
    return result


def _jax_spec(value_and_grad: Callable[[Any], Any], p: Any) -> Spec:
    def call() -> Any:
        value, gradient = value_and_grad(p)
        gradient.block_until_ready()
        return value

    return Spec(call, gradient_bytes=p.nbytes, memory=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--time", type=int, default=100)
    parser.add_argument("--classes", type=int, default=30)
    parser.add_argument("--labels", type=int, default=30, help="max label length")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--budget", type=float, default=3.0, help="seconds of timed calls each")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    if args.labels > args.time // 2:
        parser.error("--labels must be <= --time / 2 (every sequence must have an alignment)")

    import jax
    import torch

    torch.set_num_threads(args.threads)
    y_true, y_pred = make_inputs(args.batch, args.time, args.classes, args.labels, seed=0)
    shape = f"batch {args.batch}, time {args.time}, classes {args.classes}, labels <= {args.labels}"
    print(f"CTC, float32 CPU: {shape}")
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; torch "
        f"{torch.__version__} ({torch.get_num_threads()} threads), jax {jax.__version__}"
    )
    print(f"{'column':<22} {'pass':<8} {'median ms':>10} {'min ms':>9} {'value':>10}")
    rows = []
    for name, kind, build in columns(y_true, y_pred):
        if build is None:
            print(f"{name:<22} {kind:<8} {'not installed':>10}")
            continue
        timing, value = time_call(build(), args.repeat, args.budget)
        row = {"column": name, "pass": kind, "value": to_float(value), **timing}
        rows.append(row)
        print(
            f"{name:<22} {kind:<8} {timing['median_s'] * 1e3:>10.2f} "
            f"{timing['min_s'] * 1e3:>9.2f} {row['value']:>10.4f}"
        )
    values = [r["value"] for r in rows]
    assert np.allclose(values, values[0], rtol=1e-4), values
    if args.json:
        args.json.write_text(
            json.dumps({"shape": vars(args) | {"json": None}, "rows": rows}, indent=1)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
