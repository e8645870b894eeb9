"""Built-in methods: the CREAM paper's Table 1 (SFT, SRLM, Oracle, CREAM w/o RC, CREAM) and
SCIR, registered through the same hook as third-party methods, and the controls for the length
finding (docs/study-controls.md), built with the same public Method knobs a plugin can use."""

from __future__ import annotations

from typing import Any

from cream_plugin.plugins.hookspecs import hookimpl
from cream_plugin.plugins.methods import SHUFFLE, Method

LENGTH_CONTROLS = ("cream-shuffled-c", "cream-c-half", "cream-no-rc-matched-lr",
                   "cream-no-rc-lennorm")
"""The controls for the length finding (docs/study-controls.md); the smoke preset leaves them
out (tests/test_method_knobs.py runs them end to end)."""

MATCHED_LR = 2.0e-6
"""cream-no-rc-matched-lr's learning rate unless the config sets
``training.method_overrides.cream-no-rc-matched-lr.learning_rate``: the study's 2e-5 times the
movement ratio measured there (CREAM 0.090 vs cream-no-rc 0.876 nats per token, about 0.1).
A starting point: the report's exact-KL and movement rows say whether it matched."""


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
    # Controls for the length finding (docs/study-controls.md): which one removes the effect
    # says whether consistency, a smaller step, or the summed reward's length bias causes it.
    shuffled, half, matched, lennorm = LENGTH_CONTROLS
    register(Method(shuffled, "main", regularised=True, consistency_override=SHUFFLE,
                    description="control: CREAM with each iteration's measured C permuted "
                    "across its pairs (seeded by run seed and iteration): same C distribution, "
                    "no link to the prompt"))
    register(Method(half, "main", regularised=True, consistency_override=0.5,
                    description="control: CREAM with C fixed at 0.5 for every pair"))
    register(Method(matched, "main",
                    training_overrides={"learning_rate": MATCHED_LR},
                    description="control: cream-no-rc at a learning rate meant to match "
                    "CREAM's movement (training.method_overrides sets it; default 2e-6)"))
    register(Method(lennorm, "main", reward_options={"length_normalised": True},
                    description="control: cream-no-rc ranking by the implicit reward per "
                    "response token"))
