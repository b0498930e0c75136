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
import difflib
import inspect
from dataclasses import dataclass
from typing import Any

from losskit import losses, registry
from losskit.cli._deps import CLIError, UsageError
from losskit.streaming import resolve_loss

UNSUPPORTED_FAMILIES = {
    "sequence": "its losses (CTC) score label sequences against per-time-step class "
    "scores, which one row per sample of fixed-width columns cannot hold",
    "metric_learning": "its losses (Circle) compare the embeddings of the samples of a "
    "batch with each other, so their value depends on how rows are batched",
}
"""Families of losses the command line cannot compute, and why: their inputs
are not one row per sample (``losskit.spec`` gives each loss's family)."""

FAMILIES = tuple(
    dict.fromkeys(
        info.family for info in registry.LOSSES if info.family not in UNSUPPORTED_FAMILIES
    )
)
EVERYTHING = "all"


@dataclass(frozen=True)
class LossChoice:
    """One loss to compute; ``optional`` ones (from a family or ``all``) are
    skipped, with the reason reported, when they do not apply to the data."""

    loss: losses.Loss
    optional: bool = False

    @property
    def name(self) -> str:
        return self.loss.name


def _split(text: str) -> list[str]:
    """Split on commas; an item ``key=value`` without a colon belongs to the
    loss before it (``tversky:alpha=0.7,beta=0.3``).  An empty item
    (``mse,,huber``, a trailing comma, an empty value) is a usage error."""
    tokens = [t.strip() for t in _top_level_commas(text)]
    if not any(tokens):
        raise UsageError(f"--loss {text!r}: names no loss; give names such as --loss mse,huber.")
    items: list[str] = []
    for number, token in enumerate(tokens, 1):
        if not token:
            raise UsageError(
                f"--loss {text!r}: item {number} of {len(tokens)} is empty; "
                "separate names with single commas, e.g. --loss mse,huber."
            )
        if "=" in token and ":" not in token.split("=", 1)[0] and items and ":" in items[-1]:
            items[-1] += "," + token
        else:
            items.append(token)
    return items


_OPENING, _CLOSING = "([{", ")]}"


def _top_level_commas(text: str) -> list[str]:
    """``text`` split at the commas outside brackets and quotes, so that a
    value may be a list or a tuple (``alpha=[0.1,0.2]``, ``axis=(0,1)``).

    >>> _top_level_commas("mse,focal:alpha=[0.1,0.2],x='a,b'")
    ['mse', 'focal:alpha=[0.1,0.2]', "x='a,b'"]
    """
    parts, start, depth, quote = [], 0, 0, ""
    for i, character in enumerate(text):
        if quote:
            quote = "" if character == quote else quote
        elif character in "'\"":
            quote = character
        elif character in _OPENING:
            depth += 1
        elif character in _CLOSING:
            depth = max(depth - 1, 0)
        elif character == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


BASE_CLASSES = {"Loss": losses.Loss, "LossFunctionWrapper": losses.LossFunctionWrapper}
"""Names that :func:`losskit.get` resolves but that need a loss function, which
a command line cannot give."""


def known_names() -> list[str]:
    """The loss names usable on the command line (no base classes), sorted."""
    names = (set(registry.CLASSES) | set(registry.FUNCTIONS)) - set(BASE_CLASSES)
    return sorted(names)


def _resolve(name: str, item: str) -> losses.Loss:
    """The loss named ``name`` with default arguments, or a one-line error."""
    families = ", ".join([*FAMILIES, EVERYTHING])
    if name in BASE_CLASSES:
        raise CLIError(
            f"--loss {item!r}: {name} is a base class that needs a loss function, "
            f"so it cannot be used from the command line; name a loss (e.g. mse, "
            f"huber) or a family ({families})."
        )
    candidates = known_names()
    if name not in candidates:
        folded = [c for c in candidates if c.casefold() == name.casefold()]
        close = folded + [
            c
            for c in difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
            if c not in folded
        ]
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise CLIError(
            f"--loss {item!r}: Unknown loss {name!r}.{hint} Known names: "
            f"{', '.join(candidates)}; families: {families}."
        )
    try:
        loss = resolve_loss(name)
    except (ValueError, TypeError) as error:
        raise CLIError(f"--loss {item!r}: {error}") from None
    _check_supported(loss, item)
    return loss


def _family(loss: losses.Loss) -> str | None:
    for info in registry.LOSSES:
        if info.cls is type(loss):
            return info.family
    return None


def _check_supported(loss: losses.Loss, item: str) -> None:
    family = _family(loss)
    if family in UNSUPPORTED_FAMILIES:
        raise CLIError(
            f"--loss {item!r}: the command line cannot compute {type(loss).__name__}, of "
            f"the family {family!r}: {UNSUPPORTED_FAMILIES[family]}. Use the Python API "
            "on whole batches instead."
        )


def _value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def _build(item: str) -> losses.Loss:
    name, colon, arguments = item.partition(":")
    name = name.strip()
    if not name:
        raise UsageError(f"--loss {item!r}: a loss name is missing before the colon.")
    if colon and not arguments.strip():
        raise UsageError(
            f"--loss {item!r}: no arguments after the colon; give KEY=VALUE pairs, "
            "e.g. huber:delta=2.0, or the name alone."
        )
    base = _resolve(name, item)
    if not arguments:
        return base
    kwargs: dict[str, Any] = {}
    for pair in _top_level_commas(arguments):
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
        loss = cls(**kwargs)
    except (TypeError, ValueError) as error:
        raise CLIError(f"--loss {item!r}: {error}") from None
    if "name" not in kwargs:
        loss.name = describe(loss)
    return loss


def describe(loss: losses.Loss) -> str:
    """The loss's Keras ``name``, followed by the constructor arguments that
    differ from the defaults: ``huber_loss``, ``huber_loss(delta=2.0)``,
    ``tversky(alpha=0.7, beta=0.3)``."""
    default = type(loss)().get_config()
    config = loss.get_config()
    changed = []
    for key, value in config.items():
        if key in ("name", "reduction", "dtype") or value == default.get(key, value):
            continue
        if isinstance(default.get(key), float) and type(value) is int:
            value = float(value)  # delta=2 is shown as Keras stores it: 2.0
        changed.append(f"{key}={value!r}")
    base = default["name"]
    return f"{base}({', '.join(changed)})" if changed else base


def parse_losses(text: str | None) -> list[LossChoice]:
    """The losses named by a ``--loss`` value (default ``regression``)."""
    choices: list[LossChoice] = []
    for item in _split("regression" if text is None else text):
        if item in UNSUPPORTED_FAMILIES:
            raise CLIError(
                f"--loss {item!r}: the command line cannot compute the family {item!r}: "
                f"{UNSUPPORTED_FAMILIES[item]}. Families it can compute: "
                f"{', '.join([*FAMILIES, EVERYTHING])}."
            )
        if item == EVERYTHING or item in FAMILIES:
            choices.extend(
                LossChoice(info.cls(), optional=True)
                for info in registry.LOSSES
                if (item == EVERYTHING and info.family in FAMILIES) or info.family == item
            )
        else:
            choices.append(LossChoice(_build(item)))
    if not choices:
        raise CLIError("--loss names no loss.")
    return _distinct(choices)


def _same(a: losses.Loss, b: losses.Loss) -> bool:
    """The same class with equal arguments (``delta=1`` equals ``delta=1.0``)."""

    def config(loss: losses.Loss) -> dict[str, Any]:
        return {k: v for k, v in loss.get_config().items() if k != "name"}

    return type(a) is type(b) and config(a) == config(b)


def _distinct(choices: list[LossChoice]) -> list[LossChoice]:
    """One of each loss (the same class and arguments given twice count once,
    an explicit one over one from a family); different losses must have
    different names."""
    kept: list[LossChoice] = []
    for choice in choices:
        index = next((i for i, c in enumerate(kept) if _same(c.loss, choice.loss)), None)
        if index is None:
            kept.append(choice)
        elif kept[index].optional and not choice.optional:
            kept[index] = choice
    names = [c.name for c in kept]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise CLIError(f"--loss: several different losses are named {repeated}.")
    taken = sorted(set(names) & set(OUTPUT_COLUMNS))
    if taken:
        raise CLIError(
            f"--loss: a loss named {taken[0]!r} would share its column with the output's "
            f"own ({', '.join(OUTPUT_COLUMNS)}); give it another name."
        )
    return kept


OUTPUT_COLUMNS = ("scope", "group", "rows")
"""Columns (and table rows) of ``losskit evaluate``'s output besides the losses."""
