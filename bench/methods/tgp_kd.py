"""The proposed method, retrained with the joint objective alpha * CA-KLD + (1 - alpha) * CE."""
from . import tgp

NAME = "tgp-kd"
VERSION = tgp.VERSION
PRUNES = True
SECTIONS = tgp.SECTIONS


def run(ctx):
    return tgp.run(ctx, retrain_with_kd=True)


def plan(cfg):
    return tgp.plan(cfg, retrain_with_kd=True)
