"""Print the README's performance table from a ``benchmarks/run.py`` JSON file,
with each loss checked against the targets of the benchmark's issue.

    python benchmarks/readme_table.py [benchmarks/results/latest.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

MEMORY_BOUND = {
    "mean_squared_error",
    "mean_absolute_error",
    "mean_absolute_percentage_error",
    "huber_loss",
    "cosine_similarity",
    "hinge",
    "squared_hinge",
    "categorical_hinge",
    "dice",
    "tversky",
}
FWD_ROOF, FWDBWD_ROOF, FWDBWD_SPEEDUP = 1.3, 1.5, 2.0


def misses(loss: str, fwd: dict[str, Any], fwdbwd: dict[str, Any]) -> list[str]:
    """The targets one loss misses, in words."""
    missed = []
    if fwd["speedup"] is not None and fwd["speedup"] < 1.0:
        missed.append("fwd slower than peer")
    if fwdbwd["speedup"] is not None and fwdbwd["speedup"] < 1.0:
        missed.append("f+b slower than peer")
    if loss in MEMORY_BOUND:
        if fwd["losskit_over_roofline"] > FWD_ROOF:
            missed.append(f"fwd > {FWD_ROOF}x roof")
        if fwdbwd["losskit_over_roofline"] > FWDBWD_ROOF:
            missed.append(f"f+b > {FWDBWD_ROOF}x roof")
        if fwdbwd["speedup"] is not None and fwdbwd["speedup"] < FWDBWD_SPEEDUP:
            missed.append(f"f+b < {FWDBWD_SPEEDUP}x peer")
    return missed


def table(report: dict[str, Any]) -> str:
    ms = 1e3
    lines = [
        "| loss | kind | fwd ms (roof) | fwd /roof | fwd best peer | fwd speedup "
        "| f+b ms (roof) | f+b /roof | f+b best peer | f+b speedup | targets missed |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for loss, both in report["summary"].items():
        fwd, fwdbwd = both["fwd"], both["fwdbwd"]
        kind = "memory" if loss in MEMORY_BOUND else "transcendental"
        cells = [loss, kind]
        for m in (fwd, fwdbwd):
            peer = f"{m['best_peer_s'] * ms:.1f} {m['best_peer']}" if m["best_peer_s"] else "—"
            speedup = f"{m['speedup']:.2f}" if m["speedup"] is not None else "—"
            cells += [
                f"{m['losskit_s'] * ms:.2f} ({m['roofline_s'] * ms:.2f})",
                f"{m['losskit_over_roofline']:.2f}",
                peer,
                speedup,
            ]
        cells.append(", ".join(misses(loss, fwd, fwdbwd)) or "none")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else Path(__file__).parent / "results" / "latest.json"
    report = json.loads(path.read_text())
    print(table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
