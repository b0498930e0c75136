"""Spying on the fast paths: which calls a dispatcher took."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


def record_calls(
    monkeypatch: pytest.MonkeyPatch,
    owner: Any,
    name: str,
    taken: Callable[[Any, tuple[Any, ...]], bool] = lambda result, args: result is not None,
) -> list[bool]:
    """Wrap ``owner.name`` for the test; the list returned gets, per call,
    ``taken(result, args)`` (by default: whether it returned something)."""
    original = getattr(owner, name)
    calls: list[bool] = []

    def recording(*args: Any) -> Any:
        result = original(*args)
        calls.append(taken(result, args))
        return result

    monkeypatch.setattr(owner, name, recording)
    return calls
