"""Built-in ranking-consistency metrics: Kendall tau-b, Spearman rho and TopOrder (CREAM §3).

``scale`` tells :func:`cream_plugin.ranking.consistency.consistency_rate` how to map the statistic
to a rate in [0, 1]: ``signed`` statistics in [-1, 1] become (stat + 1) / 2, ``unit`` ones are kept.
"""

from __future__ import annotations

from typing import Any

from cream_plugin.plugins.hookspecs import hookimpl


@hookimpl
def register_consistency_metrics(register: Any) -> None:
    from cream_plugin.ranking import consistency

    register("kendall", consistency.kendall, scale=consistency.SIGNED,
             description="Kendall tau-b per prompt (ties handled); C = (tau + 1) / 2")
    register("spearman", consistency.spearman, scale=consistency.SIGNED,
             description="Spearman rho per prompt (average ranks); C = (rho + 1) / 2")
    register("toporder", consistency.toporder, scale=consistency.UNIT,
             description="1 when both reward tables pick the same best and worst response")
