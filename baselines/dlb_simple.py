"""DLB Simple: prune at initialisation by ProsPr's meta-gradient of cross-entropy (pai.py), then
train the masked initial weights with DLB."""
from . import pai, selfdistill

NAME = "dlb-simple"
VERSION = 1
PRUNES = True
SECTIONS = selfdistill.sections("dlb", pruned=True)
label_suffix = selfdistill.label_suffix


def run(ctx):
    return pai.run(ctx, "dlb", scoring="simple")


def plan(cfg):
    return pai.plan(cfg, "dlb")
