"""The README's Python examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})


def test_quick_start_example_prints_every_loss_equal_across_libraries() -> None:
    # The quick start's first command runs examples/all_losses.py: every
    # registered loss on NumPy, torch and JAX, one row each, equal across them.
    import subprocess
    import sys

    import losskit

    script = README.parent / "examples" / "all_losses.py"
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, check=True
    )
    rows = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines()[2:] if line}
    for info in losskit.registry.LOSSES:
        values = [float(v) for v in rows[info.keras_name]]
        assert len(values) == 3, info.keras_name  # numpy, torch, jax
        assert max(values) - min(values) <= 1e-5 * max(1.0, abs(values[0])), info.keras_name
