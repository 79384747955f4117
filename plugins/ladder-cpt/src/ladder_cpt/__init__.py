"""ladder-cpt: a continued pre-training stage for ladder, and the example of a stage plugin.

Installed, it registers the stage ``cpt`` (entry point ``ladder.stages``), so
``Pipeline([CPT(dataset="corpus.txt"), SFT(...)])`` and a recipe's ``- stage: cpt`` both work.
"""

from __future__ import annotations

from ladder_cpt.cpt import CPT, CPTStageConfig
from ladder_cpt.data import load_texts

__all__ = ["CPT", "CPTStageConfig", "load_texts", "__version__"]

__version__ = "0.1.0"
