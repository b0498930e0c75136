#!/usr/bin/env python
"""losskit's fused Triton kernels on one GPU, against the copy roofline and peers.

On a machine with a CUDA GPU and the ``gpu`` and ``bench`` extras
(``pip install -e ".[gpu,bench]"``), from the repository root::

    python benchmarks/gpu.py                     # all of it, a few minutes on an H100
    python benchmarks/gpu.py --no-compile        # skip torch.compile (its compiles are slow)

It writes ``benchmarks/results/gpu_<device>.json`` and prints a table.  For each
loss (class defaults, reduction "sum_over_batch_size") at ``--elements``
(default 2^28) float32 and bfloat16 elements, as ``(elements / 128, 128)``:

* ``copy``: ``dst.copy_(src)`` of one input: the bandwidth B; the memory limit
  is ``2 bytes / B`` for fwd (read two inputs) and ``3 bytes / B`` for fwd+bwd
  (and write the gradient);
* ``losskit fused``: the loss object (the Triton path); its row also has
  ``device_ms``, the GPU time of one call's kernels by torch.profiler (the
  CUDA-event time adds the host's time, which the GPU waits for);
* ``losskit assume_finite``: the loss object inside
  ``losskit.kernels.triton.assume_finite()`` (no read-back per call);
* ``losskit reference``: the same under ``losskit.prefer_backend("reference")``;
* ``torch native``: ``torch.nn.functional``'s loss where its math is Keras's;
* ``torch.compile``: ``torch.compile`` of the loss object, which traces the
  reference (float32, fwd+bwd, for the losses of ``COMPILED``);
* ``keras torch`` / ``keras jax``: Keras 3 on torch (eager) and on JAX
  (``jax.jit``, when JAX's CUDA build is installed), each in a child process.

and crossentropy from logits at (8192 tokens, 128256 classes) in bfloat16:
losskit fused, ``cross_entropy_inplace_grad``, the reference, ``F.cross_entropy``,
``torch.compile`` and Liger-Kernel's ``LigerCrossEntropyLoss`` (if it imports).
Every row has the median time in ms of ``--repeats`` timed calls (CUDA events,
each from an idle GPU, after two warm-up calls), ``loop_ms``, the mean of as
many calls issued back to back (as in a training loop), and the peak memory
allocated above the inputs.

With ``--cpu-smoke`` (implied without CUDA) it runs tiny sizes; without CUDA on
CPU tensors under Triton's interpreter (``TRITON_INTERPRET=1``), saying which
CUDA peers it skipped, and writes ``gpu_cpu-smoke.json``: a check that the
script works, not numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

CUDA_ONLY = "skipped (no CUDA device)"
ROOT = Path(__file__).resolve().parents[1]

# name, class, keyword arguments, input recipe, torch.nn.functional equivalent
LOSSES: list[tuple[str, str, dict[str, Any], str]] = [
    ("mse", "MeanSquaredError", {}, "normal"),
    ("mae", "MeanAbsoluteError", {}, "normal"),
    ("huber", "Huber", {}, "normal"),
    ("log_cosh", "LogCosh", {}, "normal"),
    ("bce_logits", "BinaryCrossentropy", {"from_logits": True}, "binary_logits"),
    ("cosine", "CosineSimilarity", {}, "normal"),
    ("cce_logits", "CategoricalCrossentropy", {"from_logits": True}, "soft_logits"),
    ("bfocal_logits", "BinaryFocalCrossentropy", {"from_logits": True}, "binary_logits"),
    ("cfocal_logits", "CategoricalFocalCrossentropy", {"from_logits": True}, "soft_logits"),
    ("gce", "CategoricalGeneralizedCrossEntropy", {}, "labels_probabilities"),
]
COMPILED = ("mse", "huber", "cosine", "cce_logits", "bfocal_logits", "cfocal_logits")


def _torch_native(name: str) -> Callable[[Any, Any], Any] | None:
    from torch.nn import functional as F  # noqa: N812

    return {
        "mse": lambda t, p: F.mse_loss(p, t),
        "mae": lambda t, p: F.l1_loss(p, t),
        "huber": lambda t, p: F.huber_loss(p, t, delta=1.0),
        "bce_logits": lambda t, p: F.binary_cross_entropy_with_logits(p, t),
        "cosine": lambda t, p: -F.cosine_similarity(p, t, dim=-1, eps=1e-7).mean(),
        "cce_logits": lambda t, p: F.cross_entropy(p, t),
    }.get(name)


def _inputs(recipe: str, shape: tuple[int, int], dtype: Any, device: str) -> tuple[Any, Any]:
    import torch

    g = torch.Generator(device=device).manual_seed(0)
    p = torch.randn(shape, generator=g, device=device, dtype=torch.float32)
    t = torch.randn(shape, generator=g, device=device, dtype=torch.float32)
    if recipe == "binary_logits":
        t = (t > 0).float()
    elif recipe == "soft_logits":
        t = torch.softmax(t, dim=-1)
    elif recipe == "labels_probabilities":  # integer labels, whatever the dtype
        labels = torch.randint(0, shape[1], shape[:1], generator=g, device=device)
        return labels, torch.softmax(p, dim=-1).to(dtype)
    return t.to(dtype), p.to(dtype)


# --- timing -------------------------------------------------------------------------


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _time(fn: Callable[[], Any], device: str, repeats: int) -> float:
    """Median ms of ``repeats`` calls after two warm-up calls."""
    import torch

    for _ in range(2):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        if device == "cuda":
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            stop.record()
            stop.synchronize()
            times.append(start.elapsed_time(stop))
        else:
            began = time.perf_counter()
            fn()
            times.append((time.perf_counter() - began) * 1e3)
    return statistics.median(times)


def _back_to_back(fn: Callable[[], Any], device: str, repeats: int) -> float | None:
    """Mean ms per call of ``repeats`` calls issued back to back, as a training
    loop issues them: the host may run ahead of the GPU (except where a call
    waits for it), so launch overhead hides behind earlier calls' kernels."""
    import torch

    if device != "cuda":
        return None
    torch.cuda.synchronize()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        fn()
    stop.record()
    stop.synchronize()
    return float(start.elapsed_time(stop)) / repeats


def _peak(fn: Callable[[], Any], device: str) -> float | None:
    """Peak memory (MiB) allocated by one call above what was allocated before it."""
    import torch

    if device != "cuda":
        return None
    _sync(device)
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    fn()
    _sync(device)
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def _device_ms(fn: Callable[[], Any], device: str) -> float | None:
    """The GPU time of one call's kernels (torch.profiler, summed over every
    kernel and copy it ran), without the host time that the CUDA-event time
    includes: how near the kernels themselves are to the memory limit."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    if device != "cuda":
        return None
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as trace:
        fn()
        torch.cuda.synchronize()
    total_us = sum(
        getattr(event, "self_device_time_total", None) or getattr(event, "self_cuda_time_total", 0)
        for event in trace.key_averages()
    )
    return float(total_us) / 1e3


def _measure(fn: Callable[[], Any], device: str, repeats: int, **row: Any) -> dict[str, Any]:
    try:
        ms = _time(fn, device, repeats)
        loop_ms = _back_to_back(fn, device, repeats)
        peak = _peak(fn, device)
        fused = row["provider"] in (
            "losskit fused",
            "losskit assume_finite",
            "losskit inplace_grad",
        )
        kernels = _device_ms(fn, device) if fused else None
    except Exception as error:  # a peer that fails is reported, not fatal
        result = {**row, "ms": None, "peak_mib": None, "note": f"failed: {error!r}"[:200]}
    else:
        result = {**row, "ms": ms, "peak_mib": peak}
        if loop_ms is not None:
            result["loop_ms"] = loop_ms
        if kernels is not None:
            result["device_ms"] = kernels
    _progress(result)
    return result


def _progress(row: dict[str, Any]) -> None:
    """One line per measurement as it lands (a long run shows where it is)."""
    ms = "-" if row["ms"] is None else f"{row['ms']:.3f} ms"
    print(
        f"  {row.get('loss', '')} {row.get('dtype', '')} {row.get('mode', '')} "
        f"{row['provider']}: {ms} {row.get('note', '')}",
        flush=True,
    )


def _skip(reason: str, **row: Any) -> dict[str, Any]:
    print(f"  {row.get('loss', '')} {row.get('dtype', '')} {row['provider']}: {reason}")
    return {**row, "ms": None, "peak_mib": None, "note": reason}


def _step(loss_fn: Callable[[Any, Any], Any], t: Any, p: Any, backward: bool) -> Callable[[], Any]:
    def run() -> Any:
        if backward:
            p.grad = None
            loss_fn(t, p).backward()
        else:
            return loss_fn(t, p)

    return run


# --- the measurements ----------------------------------------------------------------


def _elementwise(args: argparse.Namespace, device: str) -> list[dict[str, Any]]:
    import torch

    import losskit
    from losskit.kernels import triton as triton_path

    rows: list[dict[str, Any]] = []
    features = 128 if not args.cpu_smoke else 16
    shape = (args.elements // features, features)
    for dtype_name in ("float32", "bfloat16"):
        dtype = getattr(torch, dtype_name)
        src = torch.empty(shape, dtype=dtype, device=device)
        dst = torch.empty_like(src)
        rows.append(
            _measure(
                lambda dst=dst, src=src: dst.copy_(src),
                device,
                args.repeats,
                loss="-",
                dtype=dtype_name,
                mode="copy",
                provider="copy",
                elements=src.numel(),
            )
        )
        del src, dst
        for name, cls_name, kwargs, recipe in LOSSES:
            if args.losses and name not in args.losses:
                continue
            loss = getattr(losskit, cls_name)(**kwargs)
            t, p = _inputs(recipe, shape, dtype, device)
            if name == "cce_logits":
                t = t.float() if dtype_name == "float32" else t
            native = _torch_native(name)

            def reference(t: Any, p: Any, loss: Any = loss) -> Any:
                with losskit.prefer_backend("reference"):
                    return loss(t, p)

            def trusted(t: Any, p: Any, loss: Any = loss) -> Any:
                with triton_path.assume_finite():  # no read-back per call
                    return loss(t, p)

            providers: list[tuple[str, Callable[[Any, Any], Any] | None, str | None]] = [
                ("losskit fused", loss, None),
                ("losskit assume_finite", trusted, None),
                ("losskit reference", reference, None),
                ("torch native", native, None if native else "no torch equivalent"),
            ]
            if args.no_compile or device != "cuda":
                reason = "--no-compile" if args.no_compile else CUDA_ONLY
                providers.append(("torch.compile", None, reason))
            elif name in COMPILED and dtype_name == "float32":
                # Under torch.compile the fused path steps aside: the reference is traced.
                compiled = torch.compile(lambda t, p, loss=loss: loss(t, p))
                providers.append(("torch.compile", compiled, None))
            for mode in ("fwd", "fwd+bwd"):
                backward = mode == "fwd+bwd"
                p.requires_grad_(backward)
                for provider, fn, reason in providers:
                    if provider == "torch.compile" and not backward:
                        continue  # one compile per loss: the fwd+bwd target is the one compared
                    row = {
                        "loss": name,
                        "dtype": dtype_name,
                        "mode": mode,
                        "provider": provider,
                        "elements": p.numel(),
                    }
                    if fn is None:
                        if reason is not None and reason != "no torch equivalent":
                            rows.append(_skip(reason, **row))
                        continue
                    with contextlib.nullcontext() if backward else torch.no_grad():
                        rows.append(
                            _measure(_step(fn, t, p, backward), device, args.repeats, **row)
                        )
            del t, p
    return rows


def _crossentropy(args: argparse.Namespace, device: str) -> list[dict[str, Any]]:
    import torch
    from torch.nn import functional as F  # noqa: N812

    import losskit
    from losskit.kernels import triton as gpu

    tokens, vocab = (8192, 128256) if not args.cpu_smoke else (8, 300)
    dtype_name = "bfloat16"
    g = torch.Generator(device=device).manual_seed(0)
    base = torch.randn((tokens, vocab), generator=g, device=device).to(torch.bfloat16)
    base.requires_grad_(True)
    labels = torch.randint(0, vocab, (tokens,), generator=g, device=device)
    loss = losskit.SparseCategoricalCrossentropy(from_logits=True)

    def reference(y: Any, logits: Any) -> Any:
        with losskit.prefer_backend("reference"):
            return loss(y, logits)

    def inplace(y: Any, logits: Any) -> Any:
        return gpu.cross_entropy_inplace_grad(loss, y, logits)

    providers: list[tuple[str, Any, str | None]] = [
        ("losskit fused", loss, None),
        ("losskit inplace_grad", inplace, None),
        ("losskit reference", reference, None),
        ("torch native", lambda y, logits: F.cross_entropy(logits, y), None),
    ]
    if device == "cuda" and not args.no_compile:
        providers.append(("torch.compile", torch.compile(lambda y, logits: loss(y, logits)), None))
    else:
        providers.append(("torch.compile", None, "--no-compile" if args.no_compile else CUDA_ONLY))
    liger, reason = _liger()
    providers.append(("liger-kernel", liger, reason if device == "cuda" else CUDA_ONLY))
    rows = []
    for provider, fn, why in providers:
        row = {
            "loss": "sparse_cce_logits_vocab",
            "dtype": dtype_name,
            "mode": "fwd+bwd",
            "provider": provider,
            "elements": base.numel(),
            "shape": [tokens, vocab],
        }
        if fn is None:
            rows.append(_skip(why or "unavailable", **row))
            continue

        def step(fn: Any = fn) -> None:
            base.grad = None
            fn(labels, base.clone()).backward()  # a non-leaf (clone saves nothing)

        rows.append(_measure(step, device, args.repeats, **row))
    return rows


def _liger() -> tuple[Any, str | None]:
    try:
        from liger_kernel.transformers import LigerCrossEntropyLoss
    except Exception as error:  # not installed, or not importable beside this torch
        return None, f"liger-kernel not importable ({type(error).__name__})"
    module = LigerCrossEntropyLoss()
    return (lambda y, logits: module(logits, y)), None


# --- Keras, in child processes (one backend per process) --------------------------------

_KERAS_CHILD = """
import json, os, statistics, sys, time
backend = os.environ["KERAS_BACKEND"]
elements, repeats = int(sys.argv[1]), int(sys.argv[2])
import keras
rows = []
shape = (elements // 128, 128)
names = {"mse": "MeanSquaredError", "huber": "Huber", "cosine": "CosineSimilarity"}
def median_ms(fn):
    for _ in range(2): fn()
    times = []
    for _ in range(repeats):
        began = time.perf_counter(); fn(); times.append((time.perf_counter() - began) * 1e3)
    return statistics.median(times)
if backend == "torch":
    import torch
    for name, cls in names.items():
        loss = getattr(keras.losses, cls)()
        t = torch.randn(shape, device="cuda"); p = torch.randn(shape, device="cuda")
        def fwd():
            with torch.no_grad(): loss(t, p)
            torch.cuda.synchronize()
        q = p.clone().requires_grad_(True)
        def both():
            q.grad = None; loss(t, q).backward(); torch.cuda.synchronize()
        for mode, fn in (("fwd", fwd), ("fwd+bwd", both)):
            rows.append({"loss": name, "dtype": "float32", "mode": mode,
                         "provider": "keras torch", "ms": median_ms(fn)})
else:
    import jax
    if jax.devices()[0].platform != "gpu":
        print(json.dumps({"skip": "JAX has no CUDA device here"})); sys.exit(0)
    for name, cls in names.items():
        loss = getattr(keras.losses, cls)()
        key = jax.random.PRNGKey(0)
        t = jax.random.normal(key, shape); p = jax.random.normal(jax.random.PRNGKey(1), shape)
        fwd = jax.jit(lambda t, p: loss(t, p))
        both = jax.jit(jax.value_and_grad(lambda p, t: loss(t, p)))
        for mode, fn in (("fwd", lambda: fwd(t, p).block_until_ready()),
                         ("fwd+bwd", lambda: both(p, t)[1].block_until_ready())):
            rows.append({"loss": name, "dtype": "float32", "mode": mode,
                         "provider": "keras jax", "ms": median_ms(fn)})
print(json.dumps({"rows": rows}))
"""


def _keras(args: argparse.Namespace, device: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for backend in ("torch", "jax"):
        provider = f"keras {backend}"
        if device != "cuda" or args.no_keras:
            rows.append(_skip("--no-keras" if args.no_keras else CUDA_ONLY, provider=provider))
            continue
        if device == "cuda":
            import torch

            torch.cuda.empty_cache()  # the child needs the memory this process cached
        env = {**os.environ, "KERAS_BACKEND": backend, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
        try:
            done = subprocess.run(
                [sys.executable, "-c", _KERAS_CHILD, str(args.elements), str(args.repeats)],
                env=env,
                capture_output=True,
                text=True,
                timeout=150,
                check=True,
            )
            report = json.loads(done.stdout.strip().splitlines()[-1])
        except Exception as error:
            rows.append(_skip(f"failed: {error!r}"[:200], provider=provider))
            continue
        if "skip" in report:
            rows.append(_skip(report["skip"], provider=provider))
        rows.extend(report.get("rows", []))
    return rows


# --- main -------------------------------------------------------------------------------


def _limits(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """The memory limits (ms) per dtype from the copy's bandwidth."""
    limits = {}
    for row in rows:
        if row["provider"] == "copy" and row["ms"]:
            elements = row["elements"]
            limits[row["dtype"]] = {
                "fwd": row["ms"],
                "fwd+bwd": 1.5 * row["ms"],
                "elements": elements,
            }
    return limits


def _print(rows: list[dict[str, Any]], limits: dict[str, dict[str, float]]) -> None:
    print(
        f"{'loss':<24}{'dtype':<10}{'mode':<9}{'provider':<22}{'ms':>10}{'/limit':>12}{'MiB':>10}"
    )
    for row in rows:
        if row.get("ms") is None:
            continue
        bound = limits.get(row.get("dtype", ""), {})
        limit = (
            bound.get(row.get("mode", "")) if bound.get("elements") == row.get("elements") else None
        )
        ratio = f"{row['ms'] / limit:.2f}x" if limit and row["provider"] != "copy" else ""
        peak = row.get("peak_mib")
        print(
            f"{row.get('loss', ''):<24}{row.get('dtype', ''):<10}{row.get('mode', ''):<9}"
            f"{row['provider']:<22}{row['ms']:>10.3f}{ratio:>12}"
            f"{'' if peak is None else f'{peak:10.0f}'}"
        )


MEMORY_BOUND = ("mse", "mae", "huber")
VOCABULARY = "sparse_cce_logits_vocab"


def _cell(ms: float | None) -> str:
    return "-" if ms is None else f"{ms:.2f}"


def markdown(report: dict[str, Any]) -> str:
    """The README's tables from a report: per loss and dtype, the median ms of
    each provider, fused forward+backward over the memory limit, and issue
    12's targets (memory-bound: fwd+bwd <= 1.2 ms, fwd <= 0.8 ms and 1.5x
    torch.compile at float32; transcendental: 1.5x torch.compile and within
    1.3x of the limit; vocabulary crossentropy: no slower than Liger-Kernel,
    peak memory at most the logits + 5%)."""
    ms = {
        (r.get("loss"), r.get("dtype"), r.get("mode"), r["provider"]): r.get("ms")
        for r in report["results"]
    }
    peak = {
        r["provider"]: r.get("peak_mib") for r in report["results"] if r.get("loss") == VOCABULARY
    }
    limits = report["memory_limits_ms"]
    device = {
        (r.get("loss"), r.get("dtype"), r.get("mode")): r["device_ms"]
        for r in report["results"]
        if r.get("device_ms") is not None and r["provider"] == "losskit fused"
    }
    loop = {
        (r.get("loss"), r.get("dtype"), r.get("mode"), r["provider"]): r["loop_ms"]
        for r in report["results"]
        if r.get("loop_ms") is not None
    }
    loop_columns = [("fwd+bwd", "losskit fused"), ("fwd+bwd", "losskit assume_finite")]
    loop_columns += [("fwd+bwd", "torch.compile")]
    loop_columns = [c for c in loop_columns if any(k[2:] == c for k in loop)]
    columns = [
        ("fwd", "losskit fused"),
        ("fwd", "torch native"),
        ("fwd", "keras jax"),
        ("fwd+bwd", "losskit fused"),
        ("fwd+bwd", "losskit assume_finite"),
        ("fwd+bwd", "losskit reference"),
        ("fwd+bwd", "torch native"),
        ("fwd+bwd", "torch.compile"),
        ("fwd+bwd", "keras torch"),
        ("fwd+bwd", "keras jax"),
    ]
    measured = {(r.get("mode"), r["provider"]) for r in report["results"] if r.get("ms")}
    columns = [column for column in columns if column in measured]
    kernel_column = " | fused fwd+bwd, kernels only" if device else ""
    kernel_column += "".join(f" | {m} {p}, back to back" for m, p in loop_columns)
    lines = [
        "| loss | dtype | "
        + " | ".join(f"{m} {p}" for m, p in columns)
        + kernel_column
        + " | fused fwd+bwd / limit | target |",
        "|---|---|" + "---:|" * (len(columns) + bool(device) + len(loop_columns)) + "---:|---|",
    ]
    losses = list(
        dict.fromkeys(
            r["loss"] for r in report["results"] if r.get("loss") not in (None, "-", VOCABULARY)
        )
    )
    for dtype in ("float32", "bfloat16"):
        limit = limits.get(dtype, {})
        for loss in losses:
            cells = [_cell(ms.get((loss, dtype, m, p))) for m, p in columns]
            if device:
                cells.append(_cell(device.get((loss, dtype, "fwd+bwd"))))
            cells += [_cell(loop.get((loss, dtype, m, p))) for m, p in loop_columns]
            if all(c == "-" for c in cells):
                continue
            fused_fwd = ms.get((loss, dtype, "fwd", "losskit fused"))
            fused = ms.get((loss, dtype, "fwd+bwd", "losskit fused"))
            compiled = ms.get((loss, dtype, "fwd+bwd", "torch.compile"))
            ratio = fused / limit["fwd+bwd"] if fused and limit.get("fwd+bwd") else None
            lines.append(
                f"| {loss} | {dtype} | "
                + " | ".join(cells)
                + f" | {'-' if ratio is None else f'{ratio:.2f}x'} | "
                + _verdict(loss, dtype, fused_fwd, fused, compiled, ratio)
                + " |"
            )
    lines += [
        "",
        "| crossentropy, 8192 x 128256 bfloat16, fwd+bwd | ms | peak MiB above the inputs |",
        "|---|---:|---:|",
    ]
    for provider, value in peak.items():
        time = _cell(ms.get((VOCABULARY, "bfloat16", "fwd+bwd", provider)))
        lines.append(f"| {provider} | {time} | {'-' if value is None else f'{value:.0f}'} |")
    return "\n".join(lines)


def _verdict(
    loss: str,
    dtype: str,
    fwd: float | None,
    both: float | None,
    compiled: float | None,
    ratio: float | None,
) -> str:
    if dtype != "float32" or both is None:
        return ""
    checks = []
    if compiled:
        speedup = compiled / both
        checks.append(f"{speedup:.2f}x compile {'met' if speedup >= 1.5 else 'NOT met'}")
    if loss in MEMORY_BOUND:
        checks.append(f"fwd+bwd <= 1.2 ms {'met' if both <= 1.2 else 'NOT met'}")
        if fwd is not None:
            checks.append(f"fwd <= 0.8 ms {'met' if fwd <= 0.8 else 'NOT met'}")
    elif ratio is not None:
        checks.append(f"<= 1.3x limit {'met' if ratio <= 1.3 else 'NOT met'}")
    return "; ".join(checks)


@contextlib.contextmanager
def _routing(device: str) -> Iterator[None]:
    if device == "cuda":
        yield
        return
    from losskit.kernels import triton as gpu

    with gpu.interpret_on_cpu():
        yield


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elements", type=int, default=1 << 28)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--losses", type=lambda s: s.split(","), default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--no-keras", action="store_true", help="skip the Keras peers")
    parser.add_argument(
        "--cpu-smoke", action="store_true", help="tiny sizes (on CPU, interpreted, without CUDA)"
    )
    parser.add_argument(
        "--tuned",
        type=Path,
        default=None,
        help="a gpu_tune_<device>.json: run with its best ELEMENT_BLOCK and NUM_WARPS",
    )
    parser.add_argument(
        "--markdown",
        type=Path,
        default=None,
        help="print the README tables of a gpu_<device>.json and exit",
    )
    args = parser.parse_args(argv)
    if args.markdown is not None:
        report = json.loads(args.markdown.read_text())
        print(markdown(report))
        return report

    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" or args.cpu_smoke:
        args.cpu_smoke = True
        args.elements = min(args.elements, 1 << 10)
        print("--cpu-smoke (or no CUDA device): tiny sizes, a check of the script, not numbers.")
    if device == "cpu":
        print(
            "No CUDA device: CPU tensors under Triton's interpreter; "
            f"CUDA-only peers are {CUDA_ONLY}."
        )
    import triton

    import losskit
    from losskit.kernels import triton as gpu

    losskit.kernels.TRITON_MIN_ELEMENTS = 0  # the fused rows time the kernels at any --elements
    if args.tuned is not None:
        best = json.loads(args.tuned.read_text())["best"]
        gpu.ELEMENT_BLOCK, gpu.NUM_WARPS = int(best["ELEMENT_BLOCK"]), int(best["NUM_WARPS"])
    config = {"ELEMENT_BLOCK": gpu.ELEMENT_BLOCK, "NUM_WARPS": gpu.NUM_WARPS}
    print(f"kernel configuration: {config}")
    name = torch.cuda.get_device_name().replace(" ", "-") if device == "cuda" else "cpu"
    name += "-smoke" if args.cpu_smoke else ""
    began = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"gpu_{name}.json"
    rows: list[dict[str, Any]] = []
    sections = [_elementwise, _crossentropy, _keras]
    for number, section in enumerate(sections, 1):
        with _routing(device) if section is not _keras else contextlib.nullcontext():
            rows += section(args, device)
        report = {
            "device": name,
            "machine": platform.platform(),
            "versions": {
                "python": platform.python_version(),
                "torch": torch.__version__,
                "triton": triton.__version__,
                "losskit": getattr(losskit, "__version__", None),
            },
            "elements": args.elements,
            "repeats": args.repeats,
            "kernel_configuration": config,
            "memory_limits_ms": _limits(rows),
            "seconds": round(time.perf_counter() - began, 1),
            "complete": number == len(sections),
            "results": rows,
        }
        # saved after each section: a run cut short keeps what it measured
        path.write_text(json.dumps(report, indent=1) + "\n")
    _print(rows, report["memory_limits_ms"])
    print(f"wrote {path} ({report['seconds']} s)")
    return report


def interpret_without_cuda() -> None:
    """Without a CUDA device, Triton's interpreter runs the kernels on CPU: the
    variable must be set before Triton builds them (first import)."""
    if os.environ.get("TRITON_INTERPRET") is None:
        import torch

        if not torch.cuda.is_available():
            os.environ["TRITON_INTERPRET"] = "1"


if __name__ == "__main__":
    interpret_without_cuda()
    main()
