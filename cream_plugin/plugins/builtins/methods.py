"""Built-in methods: the CREAM paper's Table 1 (SFT, SRLM, Oracle, CREAM w/o RC, CREAM) and
SCIR, registered through the same hook as third-party methods."""

from __future__ import annotations

from typing import Any

from cream_plugin.plugins.hookspecs import hookimpl
from cream_plugin.plugins.methods import Method


@hookimpl
def register_methods(register: Any) -> None:
    register(Method("sft", None, description="the SFT model M1 only (no self-rewarding)"))
    register(Method("srlm", "judge",
                    description="self-rewarding LM: LLM-as-a-judge ranks, plain DPO"))
    register(Method("oracle", "oracle",
                    description="an external reward (answer key / reward model) ranks, plain DPO"))
    register(Method("cream-no-rc", "main",
                    description="CREAM without regularisation: implicit reward, plain DPO"))
    register(Method("cream", "main", regularised=True,
                    description="CREAM: implicit reward, each pair weighted by consistency C"))
    register(Method("scir", "main", trainer="scir", internal_consistency=True,
                    description="SCIR: implicit and generative internal rewards made to agree"))
    register(Method("cream-c1-first", "main", regularised=True, regularise_from=2,
                    description="CREAM variant (not the paper's): iteration 1 is plain DPO, "
                    "because M0's reward is its likelihood, not a trained implicit reward; "
                    "C weighs the pairs from iteration 2"))
