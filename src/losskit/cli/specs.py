"""The ``--loss`` argument: names, aliases, families and constructor arguments.

``--loss`` takes a comma-separated list.  Each item is a name that
:func:`losskit.get` resolves (a class name, a function name, a Keras default
``name`` or an alias: ``MeanSquaredError``, ``mse``, ``huber_loss``), with
optional constructor arguments after a colon (``huber:delta=2.0``,
``tversky:alpha=0.7,beta=0.3``), or a family: ``regression`` (the default),
``probabilistic``, ``hinge``, ``segmentation``, or ``all``.
"""

from __future__ import annotations

import ast
import inspect
from dataclasses import dataclass
from typing import Any

from losskit import losses, registry
from losskit.cli._deps import CLIError
from losskit.streaming import resolve_loss

FAMILIES = tuple(dict.fromkeys(info.family for info in registry.LOSSES))
EVERYTHING = "all"


@dataclass(frozen=True)
class LossChoice:
    """One loss to compute; ``optional`` ones (from a family or ``all``) are
    skipped, with the reason reported, when they do not apply to the data."""

    loss: losses.Loss
    optional: bool = False
    arguments: str = ""

    @property
    def name(self) -> str:
        return self.loss.name


def _split(text: str) -> list[str]:
    """Split on commas; an item ``key=value`` without a colon belongs to the
    loss before it (``tversky:alpha=0.7,beta=0.3``)."""
    items: list[str] = []
    for token in (t.strip() for t in text.split(",")):
        if not token:
            continue
        if "=" in token and ":" not in token.split("=", 1)[0] and items and ":" in items[-1]:
            items[-1] += "," + token
        else:
            items.append(token)
    return items


def _value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def _build(item: str) -> losses.Loss:
    name, _, arguments = item.partition(":")
    name = name.strip()
    try:
        base = resolve_loss(name)
    except ValueError as error:
        raise CLIError(f"--loss {item!r}: {error}") from None
    if type(base) in (losses.Loss, losses.LossFunctionWrapper):
        raise CLIError(f"--loss {item!r}: name a loss, not a base class.")
    if not arguments:
        return base
    kwargs: dict[str, Any] = {}
    for pair in arguments.split(","):
        key, equals, value = pair.partition("=")
        if not equals or not key.strip():
            raise CLIError(
                f"--loss {item!r}: arguments are KEY=VALUE pairs after the name, "
                "e.g. huber:delta=2.0."
            )
        kwargs[key.strip()] = _value(value.strip())
    cls = type(base)
    accepted = [p for p in inspect.signature(cls).parameters if p not in ("reduction", "dtype")]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise CLIError(
            f"--loss {item!r}: {cls.__name__} has no argument {', '.join(unknown)}; "
            f"its arguments are: {', '.join(accepted)}."
        )
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as error:
        raise CLIError(f"--loss {item!r}: {error}") from None


def parse_losses(text: str | None) -> list[LossChoice]:
    """The losses named by a ``--loss`` value (default ``regression``)."""
    choices: list[LossChoice] = []
    for item in _split(text or "regression"):
        if item == EVERYTHING or item in FAMILIES:
            choices.extend(
                LossChoice(info.cls(), optional=True)
                for info in registry.LOSSES
                if item == EVERYTHING or info.family == item
            )
        else:
            choices.append(LossChoice(_build(item), arguments=item.partition(":")[2]))
    if not choices:
        raise CLIError("--loss names no loss.")
    return _distinct(choices)


def _identity(loss: losses.Loss) -> tuple[str, str]:
    config = {k: v for k, v in loss.get_config().items() if k != "name"}
    return type(loss).__name__, repr(sorted(config.items()))


def _distinct(choices: list[LossChoice]) -> list[LossChoice]:
    """One of each loss; a loss with arguments whose name is also another
    loss's is renamed ``name:arguments`` (``huber_loss:delta=2.0``)."""
    unique: dict[tuple[str, str], LossChoice] = {}
    for choice in choices:
        key = _identity(choice.loss)
        if key not in unique or (unique[key].optional and not choice.optional):
            unique[key] = choice
    kept = list(unique.values())
    names = [c.name for c in kept]
    for choice in kept:
        if names.count(choice.name) > 1 and choice.arguments:
            choice.loss.name = f"{choice.name}:{choice.arguments}"
    names = [c.name for c in kept]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise CLIError(f"--loss: several different losses are named {repeated}.")
    return kept
