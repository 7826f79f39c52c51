"""PS-KD, dense: the freshly initialised network trained with PS-KD (no pruning); the sanity
reference for pskd-simple and pskd-epsd, which train the same initial weights masked."""
from . import selfdistill

NAME = "pskd"
VERSION = 1
PRUNES = False
SECTIONS = selfdistill.sections("pskd")
label_suffix = selfdistill.label_suffix


def run(ctx):
    return selfdistill.run_dense(ctx, "pskd")


def plan(cfg):
    return selfdistill.plan(cfg, "pskd")
