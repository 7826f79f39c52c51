"""The proposed method, retrained with the joint objective alpha * CA-KLD + (1 - alpha) * CE."""
from . import tgp

NAME = "tgp-kd"
VERSION = tgp.VERSION
PRUNES = True
SECTIONS = tgp.SECTIONS
# the temperature claims' other sides (results/reference/claims.yaml); a grid may list the label alone
VARIANTS = {"tgp-kd-T3": {"kd.temperature": 3}, "tgp-kd-T5": {"kd.temperature": 5}}


def run(ctx):
    return tgp.run(ctx, retrain_with_kd=True)


def plan(cfg):
    return tgp.plan(cfg, retrain_with_kd=True)
