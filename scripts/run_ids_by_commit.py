"""Which committed code reproduces the run ids of a results folder (records made without a code fingerprint).

    python scripts/run_ids_by_commit.py results/h100-small-cifar10 5dfc9d5..dcb065f

For each commit of the range (oldest first) the tree is exported with ``git archive`` to a temporary
folder and, in a fresh process with that tree first on ``sys.path``, the grid of each record's own
command line (``provenance.argv``: config and ``--set`` overrides) is expanded for the record's
device type; the line says how many of the folder's run ids it reproduces, or why it could not
expand the grid. A run id hashes the run's identity (harness version, method version, the config
sections its method depends on), not the code: a match bounds the code, it does not pin it.
"""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXPAND = """
import json, sys
from bench.config import load_config
try:                                    # bench.grid and bench.registry (--plugin) since issue 18
    from bench import registry
    from bench.grid import expand_grid
except ImportError:
    from bench import methods
    from bench.config import expand_grid as old_expand
    registry = None
    expand_grid = lambda cfg, dev: old_expand(cfg, methods.get, dev)
got = set()
for argv, dev in json.loads(sys.argv[1]):
    sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    if registry is not None:
        registry.load_plugins([argv[i + 1] for i, a in enumerate(argv) if a == "--plugin"])
    got |= {s.run_id for s in expand_grid(load_config(argv[2], sets), dev)}
print(json.dumps(sorted(got)))
"""


def main(results: str, commits: str) -> None:
    records = [json.loads(p.read_text()) for p in sorted(Path(results).glob("runs/*/*.json"))]
    want = {r["run_id"] for r in records}
    argvs = sorted({json.dumps([r["provenance"]["argv"], r["device_type"]]) for r in records})
    revs = subprocess.run(["git", "rev-list", "--reverse", commits], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout.split()
    for rev in revs:
        line = subprocess.run(["git", "log", "-1", "--format=%h %ci", rev], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout.strip()
        with tempfile.TemporaryDirectory() as tree:
            archive = subprocess.run(["git", "archive", rev], cwd=REPO, capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
            out = subprocess.run([sys.executable, "-c", EXPAND, "[" + ",".join(argvs) + "]"], cwd=tree,
                                 capture_output=True, text=True)
        if out.returncode:
            print(f"{line}  cannot expand: {(out.stderr.strip().splitlines() or ['?'])[-1][:120]}")
        else:
            print(f"{line}  reproduces {len(want & set(json.loads(out.stdout)))} of {len(want)} run ids")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
