"""PS-KD Simple: prune at initialisation by ProsPr's meta-gradient of cross-entropy (pai.py), then
train the masked initial weights with PS-KD."""
from . import pai, selfdistill

NAME = "pskd-simple"
VERSION = 1
PRUNES = True
SECTIONS = selfdistill.sections("pskd", pruned=True)
label_suffix = selfdistill.label_suffix


def run(ctx):
    return pai.run(ctx, "pskd", scoring="simple")


def plan(cfg):
    return pai.plan(cfg, "pskd")
