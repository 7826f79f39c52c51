"""CS-KD Simple: prune at initialisation by ProsPr's meta-gradient of cross-entropy (pai.py), then
train the masked initial weights with CS-KD."""
from . import pai, selfdistill

NAME = "cskd-simple"
VERSION = 1
PRUNES = True
SECTIONS = selfdistill.sections("cskd", pruned=True)
label_suffix = selfdistill.label_suffix


def run(ctx):
    return pai.run(ctx, "cskd", scoring="simple")


def plan(cfg):
    return pai.plan(cfg, "cskd")
