"""The nine self-distillation rows, declared as one table: each SD method (CS-KD, PS-KD, DLB) trained
dense from initialisation, or pruned at initialisation first, by "Simple" (ProsPr's meta-gradient of
cross-entropy) or by "EPSD (reimpl.)" (the meta-gradient of the SD loss itself), then trained with the
masks fixed. How they train: selfdistill.py; how they prune: pai.py; what is taken from each official
repository and what is inferred: docs/baselines.md.

A row's grid name is ``<sd>`` (dense: the sanity reference of its two pruned rows, which train the
same initial weights masked), ``<sd>-simple`` or ``<sd>-epsd``; its run identity hashes the sections
of ``selfdistill.sections`` and its ``VERSION``, as the nine one-row files this table replaced did.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from bench.registry import register_method

from . import pai, selfdistill

SD_METHODS = ("cskd", "pskd", "dlb")
PAPERS = {"cskd": "CS-KD (Yun et al., CVPR 2020)", "pskd": "PS-KD (Kim et al., ICCV 2021)",
          "dlb": "DLB (Shen et al., CVPR 2022)"}
SCORINGS = (None, "simple", "epsd")       # None: no pruning (the dense row)


@dataclass
class SDRow:
    """One row: an SD method, how it prunes at initialisation (or not), its version."""
    sd: str
    scoring: Optional[str]
    VERSION: int = 1                       # bump one row's version when a fix changes that row's results

    label_suffix = staticmethod(selfdistill.label_suffix)

    @property
    def NAME(self) -> str:
        return self.sd + (f"-{self.scoring}" if self.scoring else "")

    @property
    def PRUNES(self) -> bool:
        return self.scoring is not None

    @property
    def SECTIONS(self) -> tuple[str, ...]:
        return selfdistill.sections(self.sd, pruned=self.PRUNES, epsd=self.scoring == "epsd")

    @property
    def DESCRIPTION(self) -> str:
        paper = PAPERS[self.sd]
        if self.scoring is None:
            return f"{paper}: the initial network trained with it, dense (the sanity reference of its pruned rows)."
        how = ("ProsPr's meta-gradient of cross-entropy ('Simple')" if self.scoring == "simple" else
               "the meta-gradient of the SD loss ('EPSD (reimpl.)', no official code)")
        return f"{paper}, pruned at initialisation by {how}, then trained with it."

    def prunable_set(self, cfg) -> str:
        return selfdistill.layers_of(cfg)

    def run(self, ctx):
        if self.scoring is None:
            return selfdistill.run_dense(ctx, self.sd)
        return pai.run(ctx, self.sd, scoring=self.scoring)

    def plan(self, cfg):
        return selfdistill.plan(cfg, self.sd) if self.scoring is None else pai.plan(cfg, self.sd)


ROWS = [register_method(SDRow(sd, scoring)) for sd in SD_METHODS for scoring in SCORINGS]
