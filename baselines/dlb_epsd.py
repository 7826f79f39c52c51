"""DLB EPSD (reimpl.): prune at initialisation by the meta-gradient of the DLB loss itself
(pai.py), then train the masked initial weights with DLB."""
from . import pai, selfdistill

NAME = "dlb-epsd"
VERSION = 1
PRUNES = True
SECTIONS = selfdistill.sections("dlb", pruned=True, epsd=True)
label_suffix = selfdistill.label_suffix


def run(ctx):
    return pai.run(ctx, "dlb", scoring="epsd")


def plan(cfg):
    return pai.plan(cfg, "dlb")
