"""DLB, dense: the freshly initialised network trained with DLB (no pruning); the sanity
reference for dlb-simple and dlb-epsd, which train the same initial weights masked."""
from . import selfdistill

NAME = "dlb"
VERSION = 1
PRUNES = False
SECTIONS = selfdistill.sections("dlb")
label_suffix = selfdistill.label_suffix


def run(ctx):
    return selfdistill.run_dense(ctx, "dlb")


def plan(cfg):
    return selfdistill.plan(cfg, "dlb")
