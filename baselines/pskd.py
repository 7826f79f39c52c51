"""PS-KD, dense: the freshly initialised network trained with PS-KD (no pruning); the sanity
reference for pskd-simple and pskd-epsd, which train the same initial weights masked."""
from . import selfdistill

NAME = "pskd"
VERSION = 1
PRUNES = False
SECTIONS = selfdistill.sections("pskd")


def run(ctx):
    return selfdistill.run_dense(ctx, "pskd")
