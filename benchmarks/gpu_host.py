#!/usr/bin/env python
"""The host's cost of one fused loss call on the GPU, and where it goes.

At 2^28 elements the fused kernels run at the memory limit, yet a call issued
back to back takes longer than its kernels when the host's Python work per
call exceeds the GPU's.  This measures that host work on inputs small enough
(``--elements``, default 2^19) that the GPU finishes first: the wall time per
forward+backward call over ``--calls`` calls, for the checked call (one
read-back per call), under ``assume_finite()`` (none) and for torch's native
loss where there is one; the cost of one Triton launch (the scaling kernel,
which does nothing for an upstream 1); then cProfile's largest entries for the
``assume_finite`` calls.

    python benchmarks/gpu_host.py [--elements N] [--calls N] [--out DIR]

Without CUDA it runs tiny sizes under Triton's interpreter (a check of the
script, not numbers).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import platform
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu import _inputs, _step, _torch_native, interpret_without_cuda

LOSSES = {
    "mse": ("MeanSquaredError", {}, "regression"),
    "bce_logits": ("BinaryCrossentropy", {"from_logits": True}, "binary_logits"),
    "cce_logits": ("CategoricalCrossentropy", {"from_logits": True}, "soft_logits"),
    "cosine": ("CosineSimilarity", {}, "regression"),
}


def _per_call_us(fn: Callable[[], Any], calls: int, sync: Callable[[], None]) -> float:
    for _ in range(3):
        fn()
    sync()
    began = time.perf_counter()
    for _ in range(calls):
        fn()
    sync()
    return (time.perf_counter() - began) / calls * 1e6


def _launch_us(gpu: Any, device: str, calls: int, sync: Callable[[], None]) -> float:
    import torch

    gradient = torch.zeros(1 << 12, device=device)
    one = torch.ones((), device=device)
    return _per_call_us(lambda: gpu._scale_in_place(gradient, one), calls, sync)


def _calls(
    args: argparse.Namespace,
    shape: tuple[int, int],
    gpu: Any,
    device: str,
    sync: Callable[[], None],
) -> list[str]:
    """The table of one size, the cost of a launch and the profiles."""
    import torch

    import losskit

    lines: list[str] = []
    steps: dict[str, Callable[[], Any]] = {}
    for key, (cls, kwargs, recipe) in LOSSES.items():
        loss = getattr(losskit, cls)(**kwargs)
        t, p = _inputs(recipe, shape, torch.float32, device)
        p.requires_grad_(True)
        checked = _per_call_us(_step(loss, t, p, backward=True), args.calls, sync)
        steps[key] = step = _step(loss, t, p, backward=True)
        with gpu.assume_finite():
            unchecked = _per_call_us(step, args.calls, sync)
        native_fn = _torch_native(key)
        native = (
            f"{_per_call_us(_step(native_fn, t, p, backward=True), args.calls, sync):.0f}"
            if native_fn is not None
            else "-"
        )
        lines.append(f"| {key} | {checked:.0f} | {unchecked:.0f} | {native} |")
    lines += [
        "",
        f"one Triton launch (scale_kernel): {_launch_us(gpu, device, args.calls, sync):.1f} us",
    ]
    for key in ("mse", "cce_logits"):
        profiler = cProfile.Profile()
        with gpu.assume_finite():
            profiler.enable()
            for _ in range(args.calls):
                steps[key]()
            profiler.disable()
        sync()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
        lines += [
            "",
            f"## cProfile, {key}, {args.calls} calls under assume_finite, by own time",
        ]
        lines += [line for line in text.getvalue().splitlines() if line.strip()]
    return lines


def _sweep(args: argparse.Namespace, gpu: Any, device: str, sync: Callable[[], None]) -> list[str]:
    """Per-call time of forward+backward calls issued back to back, by size:
    the kernels (checked, and under ``assume_finite``), losskit with the
    kernels declined (its torch lowering) and torch's native loss."""
    import torch

    import losskit

    lines = [
        "",
        "## forward+backward calls back to back, us per call, by size (float32, 128 features)",
        "",
        "| loss | elements | kernels, checked | kernels, assume_finite | losskit torch lowering"
        " | torch native |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    try:
        for key, (cls, kwargs, recipe) in LOSSES.items():
            loss = getattr(losskit, cls)(**kwargs)
            for elements in args.sweep if device == "cuda" else args.sweep[:1]:
                shape = (max(elements // 128, 1), 128)
                t, p = _inputs(recipe, shape, torch.float32, device)
                p.requires_grad_(True)
                step = _step(loss, t, p, backward=True)
                calls = max(10, min(args.calls, (1 << 26) // elements * 20))
                losskit.kernels.TRITON_MIN_ELEMENTS = 0
                checked = _per_call_us(step, calls, sync)
                with gpu.assume_finite():
                    unchecked = _per_call_us(step, calls, sync)
                losskit.kernels.TRITON_MIN_ELEMENTS = 1 << 62
                lowered = _per_call_us(step, calls, sync)
                native_fn = _torch_native(key)
                native = "-"
                if native_fn is not None:
                    native_step = _step(native_fn, t, p, backward=True)
                    native = f"{_per_call_us(native_step, calls, sync):.0f}"
                lines.append(
                    f"| {key} | {shape[0] * shape[1]} | {checked:.0f} | {unchecked:.0f} "
                    f"| {lowered:.0f} | {native} |"
                )
    finally:
        losskit.kernels.TRITON_MIN_ELEMENTS = 0
    return lines


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elements", type=int, default=1 << 19)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--sweep",
        type=lambda text: [int(v) for v in text.split(",")],
        default=[1 << k for k in range(14, 27, 2)],
        help="element counts for the table of calls back to back by size",
    )
    args = parser.parse_args(argv)

    import contextlib

    import torch

    import losskit
    from losskit.kernels import triton as gpu

    device = "cuda" if torch.cuda.is_available() else "cpu"
    routing: Any = contextlib.nullcontext
    if device == "cpu":
        args.elements, args.calls, routing = min(args.elements, 1 << 10), 3, gpu.interpret_on_cpu

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    shape = (args.elements // 128, 128)
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu (interpreted)"
    lines = [
        f"# host cost per call: {name}, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, torch {torch.__version__}; "
        f"{shape[0]} x {shape[1]} float32, {args.calls} calls",
        "",
        "| loss | fwd+bwd checked, us | fwd+bwd assume_finite, us | fwd+bwd torch native, us |",
        "|---|---:|---:|---:|",
    ]
    saved = losskit.kernels.TRITON_MIN_ELEMENTS
    losskit.kernels.TRITON_MIN_ELEMENTS = 0  # the kernels at every size (but the lowering's rows)
    try:
        with routing():
            lines += _calls(args, shape, gpu, device, sync)
            lines += _sweep(args, gpu, device, sync)
    finally:
        losskit.kernels.TRITON_MIN_ELEMENTS = saved
    report = "\n".join(lines)
    print(report)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_host.txt").write_text(report + "\n")
    return report


if __name__ == "__main__":
    interpret_without_cuda()
    main()
