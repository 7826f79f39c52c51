"""PS-KD EPSD (reimpl.): prune at initialisation by the meta-gradient of the PS-KD loss itself
(pai.py), then train the masked initial weights with PS-KD."""
from . import pai, selfdistill

NAME = "pskd-epsd"
VERSION = 1
PRUNES = True
SECTIONS = selfdistill.sections("pskd", pruned=True, epsd=True)
label_suffix = selfdistill.label_suffix


def run(ctx):
    return pai.run(ctx, "pskd", scoring="epsd")


def plan(cfg):
    return pai.plan(cfg, "pskd")
