"""CS-KD, dense: the freshly initialised network trained with CS-KD (no pruning); the sanity
reference for cskd-simple and cskd-epsd, which train the same initial weights masked."""
from . import selfdistill

NAME = "cskd"
VERSION = 1
PRUNES = False
SECTIONS = selfdistill.sections("cskd")
label_suffix = selfdistill.label_suffix


def run(ctx):
    return selfdistill.run_dense(ctx, "cskd")


def plan(cfg):
    return selfdistill.plan(cfg, "cskd")
