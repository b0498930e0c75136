"""``python -m losskit``: the ``losskit`` command line."""

from losskit.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
