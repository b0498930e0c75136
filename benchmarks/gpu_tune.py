#!/usr/bin/env python
"""Tile size and warps of losskit's Triton kernels, measured on one GPU.

The elementwise and row-wise kernels take a tile of ``ELEMENT_BLOCK`` elements
per program and ``NUM_WARPS`` warps (``losskit.kernels.triton``).  This times
MSE (the elementwise kernel), crossentropy from logits (the row kernel) and
binary crossentropy from logits (transcendentals) at ``--elements`` float32
elements, forward and forward+backward, for each pair in ``CONFIGS``, and
writes ``gpu_tune_<device>.json`` with every time and the pair with the least
total.  ``benchmarks/gpu.py --tuned FILE`` runs the benchmark with that pair,
and the defaults in the package are set from such a run (the JSON records the
card).  A fixed pair, not Triton's autotuner: the tile sets the order of the
reduction, and a result must not depend on which configuration a process
happened to pick.

    python benchmarks/gpu_tune.py [--elements N] [--out DIR]

Without CUDA it runs tiny sizes under Triton's interpreter (a check of the
script, not numbers).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu import ROOT, _inputs, _routing, _step, _time, interpret_without_cuda

CONFIGS = [
    (2048, 4),
    (4096, 4),
    (8192, 4),
    (16384, 4),
    (4096, 8),
    (8192, 8),
    (16384, 8),
    (8192, 16),
]
LOSSES = [
    ("mse", "MeanSquaredError", {}, "normal"),
    ("cce_logits", "CategoricalCrossentropy", {"from_logits": True}, "soft_logits"),
    ("bce_logits", "BinaryCrossentropy", {"from_logits": True}, "binary_logits"),
]


def _sweep(args: argparse.Namespace, device: str) -> list[dict[str, Any]]:
    import torch

    import losskit
    from losskit.kernels import triton as gpu

    losskit.kernels.TRITON_MIN_ELEMENTS = 0  # the kernels at any --elements
    features = 128 if device == "cuda" else 16
    shape = (args.elements // features, features)
    configs = CONFIGS if device == "cuda" else CONFIGS[:2]
    rows = []
    for name, cls_name, kwargs, recipe in LOSSES:
        loss = getattr(losskit, cls_name)(**kwargs)
        t, p = _inputs(recipe, shape, torch.float32, device)
        for block, warps in configs:
            gpu.ELEMENT_BLOCK, gpu.NUM_WARPS = block, warps
            for mode in ("fwd", "fwd+bwd"):
                backward = mode == "fwd+bwd"
                p.requires_grad_(backward)
                with contextlib.nullcontext() if backward else torch.no_grad():
                    ms = _time(_step(loss, t, p, backward), device, args.repeats)
                row = {"loss": name, "mode": mode, "ELEMENT_BLOCK": block, "NUM_WARPS": warps}
                rows.append({**row, "ms": ms})
                print(f"  {name} {mode} block {block} warps {warps}: {ms:.3f} ms", flush=True)
        del t, p
    return rows


def _best(rows: list[dict[str, Any]]) -> dict[str, int]:
    totals: dict[tuple[int, int], float] = {}
    for row in rows:
        key = (row["ELEMENT_BLOCK"], row["NUM_WARPS"])
        totals[key] = totals.get(key, 0.0) + row["ms"]
    block, warps = min(totals, key=lambda key: totals[key])
    return {"ELEMENT_BLOCK": block, "NUM_WARPS": warps}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elements", type=int, default=1 << 28)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)

    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        args.elements = min(args.elements, 1 << 10)
        print("No CUDA device: tiny sizes under Triton's interpreter, not numbers.")
    from losskit.kernels import triton as gpu

    defaults = {"ELEMENT_BLOCK": gpu.ELEMENT_BLOCK, "NUM_WARPS": gpu.NUM_WARPS}
    began = time.perf_counter()
    with _routing(device):
        rows = _sweep(args, device)
    gpu.ELEMENT_BLOCK, gpu.NUM_WARPS = defaults["ELEMENT_BLOCK"], defaults["NUM_WARPS"]
    name = torch.cuda.get_device_name().replace(" ", "-") if device == "cuda" else "cpu-smoke"
    report = {
        "device": name,
        "elements": args.elements,
        "repeats": args.repeats,
        "defaults": defaults,
        "best": _best(rows),
        "seconds": round(time.perf_counter() - began, 1),
        "results": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"gpu_tune_{name}.json"
    path.write_text(json.dumps(report, indent=1) + "\n")
    print(f"best {report['best']} (defaults {defaults}); wrote {path}")
    return report


if __name__ == "__main__":
    interpret_without_cuda()
    main()
