"""Phase groups: every timed phase of a run belongs to one, and the latency table sums them.

Torch-free, so that both the run side (bench/context.py records a phase's group) and the report side
(bench/report/aggregate.py counts minutes per group) import the one definition.

The cost of a run (docs/reporting.md, "The cost convention") is the time from a randomly initialised
student to the final pruned model: 'per run' sums the STUDENT_GROUPS (dense pre-training included, a
reused cached artifact at what it cost when it was made); the teacher is its own group, and 'per run
+ teacher' adds it; eval is excluded.
"""
from __future__ import annotations

GROUPS = ("pretrain", "teacher", "score+prune", "retrain", "other", "eval")
STUDENT_GROUPS = ("pretrain", "score+prune", "retrain", "other")   # summed into 'per run'
TIMED_GROUPS = ("pretrain", "teacher", "score+prune", "retrain", "other")   # every group the table shows
# The group of a standard phase name: what a method gets without declaring one (``ctx.phase(name,
# group=...)``), and how records written before groups existed are read.
DEFAULT_GROUPS = {"pretrain": "pretrain", "teacher": "teacher", "finetune": "score+prune",
                  "score": "score+prune", "prune": "score+prune", "retrain": "retrain", "eval": "eval"}


def phase_group(name: str, declared: str | None = None) -> str:
    """The group a phase is counted in: the declared one when known, 'other' when the declared group is
    unknown, else inferred from the name; a name not known is 'other'."""
    if declared:
        return declared if declared in GROUPS else "other"
    return DEFAULT_GROUPS.get(name, "other")
