#!/usr/bin/env python
"""Where a fused loss's forward+backward spends its GPU time, kernel by kernel.

For MSE and crossentropy from logits at ``--elements`` float32 elements this
prints torch.profiler's table of device kernels for one ``loss.backward()``
step (so an unexpected kernel, such as a copy of the gradient, shows by name),
and the CUDA-event time of the step four ways: ``backward()`` into ``.grad``,
``torch.autograd.grad`` (no accumulation into ``.grad``), the forward alone,
and ``backward()`` inside ``assume_finite()`` (no read-back per call).

    python benchmarks/gpu_profile.py [--elements N]

Needs a CUDA device (without one it says so and exits).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu import _inputs, _step, _time


def _profile(name: str, loss: Any, t: Any, p: Any, repeats: int) -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from losskit.kernels.triton import assume_finite

    step = _step(loss, t, p, backward=True)

    def grad_only() -> None:
        torch.autograd.grad(loss(t, p), p)

    def forward() -> None:
        with torch.no_grad():
            _step(loss, t, p, backward=False)()

    def trusted() -> None:
        with assume_finite():
            step()

    p.requires_grad_(True)
    timed = [
        ("backward()", step),
        ("autograd.grad", grad_only),
        ("forward", forward),
        ("backward() under assume_finite", trusted),
    ]
    for label, fn in timed:
        print(f"{name}: {label}: {_time(fn, 'cuda', repeats):.3f} ms", flush=True)
    step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as trace:
        step()
        torch.cuda.synchronize()
    table = trace.key_averages().table(sort_by="self_device_time_total", row_limit=12)
    print(table, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elements", type=int, default=1 << 28)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    import torch

    import losskit

    if not torch.cuda.is_available():
        print("No CUDA device: nothing to profile.")
        return
    losskit.kernels.TRITON_MIN_ELEMENTS = 0  # the kernels at any --elements
    shape = (args.elements // 128, 128)
    cases = [
        ("mse", losskit.MeanSquaredError(), "normal"),
        ("cce_logits", losskit.CategoricalCrossentropy(from_logits=True), "soft_logits"),
    ]
    for name, loss, recipe in cases:
        t, p = _inputs(recipe, shape, torch.float32, "cuda")
        _profile(name, loss, t, p, args.repeats)
        del t, p


if __name__ == "__main__":
    main()
