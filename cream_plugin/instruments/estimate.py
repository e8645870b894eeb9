"""The one result type of every instrument: a number with its interval, n and why it may be NaN.

Every statistic the report shows is an :class:`Estimate`, so renderers and the plain-language
summary treat them alike, and an undefined number (n = 0, one class only) carries the reason
instead of silently printing ``nan``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from cream_plugin.errors import DataError

NAN = float("nan")


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a two-sided interval (``low``, ``high``) and sample size ``n``.

    ``p_value`` is the two-sided p-value of the test named in ``method`` (NaN when none applies);
    ``reason`` says why ``value`` is NaN or what limits it (empty when nothing to say).
    ``mde`` is the minimum detectable effect of the test at this n (80% power, two-sided 5%;
    :mod:`cream_plugin.instruments.power`), on the figure's own scale, NaN when not stated.
    """

    value: float
    low: float = NAN
    high: float = NAN
    n: int = 0
    p_value: float = NAN
    method: str = ""
    reason: str = ""
    mde: float = NAN

    @property
    def defined(self) -> bool:
        """Whether the point estimate is a number."""
        return not math.isnan(self.value)

    @property
    def has_interval(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))

    def excludes(self, reference: float) -> bool:
        """True when the interval lies entirely above or below ``reference`` (e.g. chance)."""
        return self.has_interval and (self.low > reference or self.high < reference)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: NaN becomes None (JSON has no NaN)."""
        return {k: _clean(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Estimate:
        """Inverse of :meth:`to_dict`."""
        def num(key: str) -> float:
            value = data.get(key)
            return NAN if value is None else float(value)

        return cls(
            value=num("value"), low=num("low"), high=num("high"), n=int(data.get("n") or 0),
            p_value=num("p_value"), method=str(data.get("method") or ""),
            reason=str(data.get("reason") or ""), mde=num("mde"),
        )

    def with_mde(self, mde: float) -> Estimate:
        """The same estimate stating its minimum detectable effect."""
        return dataclasses.replace(self, mde=mde)


def undefined(reason: str, n: int = 0, method: str = "") -> Estimate:
    """A NaN estimate that says why it could not be computed."""
    return Estimate(NAN, n=n, method=method, reason=reason)


def as_numbers(values: object, name: str, ndim: int, expected: str) -> np.ndarray:
    """A float64 array of ``ndim`` dimensions, or a DataError naming the input and ``expected``
    (e.g. "(P, N)")."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{name}: expected a {expected} array of numbers") from None
    if array.ndim != ndim:
        raise DataError(f"{name} has shape {array.shape}; expected {expected}")
    return array
