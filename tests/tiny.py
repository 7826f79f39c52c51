"""The tiny grid (bench/tiny.py) and a config file made from it."""
import yaml

from bench.tiny import TINY

__all__ = ["TINY", "write_config"]


def write_config(path, **sections):
    data = {**TINY, **sections}
    path.write_text(yaml.safe_dump(data))
    return path
