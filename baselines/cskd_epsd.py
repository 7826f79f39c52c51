"""CS-KD EPSD (reimpl.): prune at initialisation by the meta-gradient of the CS-KD loss itself
(pai.py), then train the masked initial weights with CS-KD."""
from . import pai, selfdistill

NAME = "cskd-epsd"
VERSION = 1
PRUNES = True
SECTIONS = selfdistill.sections("cskd", pruned=True, epsd=True)
label_suffix = selfdistill.label_suffix


def run(ctx):
    return pai.run(ctx, "cskd", scoring="epsd")


def plan(cfg):
    return pai.plan(cfg, "cskd")
