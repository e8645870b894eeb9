"""Built-in trainers: ``cream`` (CREAMTrainer), ``scir`` (SCIRTrainer), ``dpo`` (DPOTrainer).

Classes cannot be imported lazily, so TRL is imported inside the hook body: listing plugins
imports it only when the trainer kind is asked for.
"""

from __future__ import annotations

from typing import Any

from cream_plugin.plugins.hookspecs import hookimpl


@hookimpl
def register_trainers(register: Any) -> None:
    from trl import DPOConfig, DPOTrainer

    from cream_plugin.trainers.cream_trainer import CREAMConfig, CREAMTrainer
    from cream_plugin.trainers.scir_trainer import SCIRConfig, SCIRTrainer

    register(
        "cream",
        CREAMTrainer,
        CREAMConfig,
        description="CREAM: DPO with each pair's loss weighted by its ranking consistency C",
    )
    register(
        "scir",
        SCIRTrainer,
        SCIRConfig,
        description="SCIR: the implicit DPO reward and the pairwise judge of the policy made to "
        "agree; DPO on the pairs they agree on",
    )
    register("dpo", DPOTrainer, DPOConfig, description="TRL's plain DPOTrainer (no consistency)")
