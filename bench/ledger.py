"""What one run spent and trained: its timed phases and their latency groups, the phases reused from cached
artifacts (at what they cost when made), the training budget per phase, the artifacts used, and the rounds
of an iterative method. The run's context holds one ``Ledger``; the runner writes it into the record."""
from __future__ import annotations

from typing import Optional

import torch

from .config import to_dict
from .engine import PhaseTimer
from .phases import DEFAULT_GROUPS, GROUPS
from .provenance import device_name, git_state


class Ledger:
    def __init__(self, device: torch.device):
        self.device_name = device_name(device)
        self.timer = PhaseTimer(device)
        self.groups: dict[str, str] = {}        # phase -> latency group (declared or by name)
        self.reused: dict[str, dict] = {}       # phase -> what it cost when its artifact was made
        self.budget: dict[str, dict] = {}       # phase -> what it trained (epochs, images), live or reused
        self.artifacts_used: list[dict] = []    # every cached artifact this run loaded or made
        self.round_records: list[dict] = []     # per-round records of iterative methods

    def declare(self, name: str, group: Optional[str]) -> None:
        """Phase ``name`` belongs to latency ``group`` (default: its own earlier one, or by its name)."""
        if group is not None and group not in GROUPS:
            raise ValueError(f"phase group {group!r} of phase {name!r}; allowed: {', '.join(GROUPS)}")
        self.groups[name] = group or self.groups.get(name) or DEFAULT_GROUPS.get(name, "other")

    def count(self, phase: str, images: int, epochs: int, n_train: int, augment) -> None:
        """Add one training call to ``phase``'s budget: ``images`` trained in ``epochs``; full-data epochs are
        its images over the run's training set of ``n_train`` (an epoch on half the classes counts half)."""
        b = self.budget.setdefault(phase, {"epochs": 0, "images": 0, "full_data_epochs": 0.0, "reused": False,
                                           "augment": to_dict(augment)})
        b["epochs"] += epochs
        b["images"] += images
        b["full_data_epochs"] = b["images"] / n_train

    def reuse(self, phases: tuple[str, ...], meta: dict) -> None:
        """``phases`` came from a cached artifact (``meta``: its sidecar): recorded at what they cost when made."""
        for ph in phases:
            self.reused[ph] = {"seconds": meta["phase_seconds"].get(ph, 0.0), "device": meta.get("device"),
                               "group": meta.get("phase_groups", {}).get(ph, DEFAULT_GROUPS.get(ph, "other")),
                               "commit": meta.get("git_commit")}
            self.groups.setdefault(ph, self.reused[ph]["group"])
            if ph in meta.get("phase_budget", {}):
                self.budget[ph] = {**meta["phase_budget"][ph], "reused": True}

    def used(self, kind: str, key: str, meta: dict, phases: tuple[str, ...], reused: bool) -> None:
        """An artifact this run loaded or made; ``phases``: the record's phases its cost is in, so that a
        grid's total counts each shared artifact once (bench/report/aggregate.py::grid_totals)."""
        self.artifacts_used.append({"kind": kind, "key": key, "reused": reused, "phases": list(phases),
                                    "path": meta.get("path"),
                                    "sha256": meta.get("sha256"), "git_commit": meta.get("git_commit"),
                                    "git_dirty": meta.get("git_dirty"), "code_fingerprint": meta.get("code_fingerprint"),
                                    "device": meta.get("device"),
                                    "version": (meta.get("identity") or {}).get("version"),
                                    "harness_version": meta.get("harness_version"),
                                    "created_at": meta.get("created_at")})

    def phases(self) -> dict:
        """{phase: {seconds, reused, device, group, commit}}; a reused phase is what its cached
        artifact cost when it was made, on the device it was made on."""
        commit, _ = git_state()
        out = {k: {"seconds": v, "reused": False, "device": self.device_name, "group": self.groups.get(k, "other"),
                   "commit": commit}
               for k, v in self.timer.seconds().items()}
        for k, v in self.reused.items():
            if k in out:
                raise RuntimeError(f"phase {k!r} was both timed in this run and reused from the cache; "
                                   "give the live part its own phase name")
            out[k] = {"reused": True, **v}
        return out

    def add_round(self, r: int, *, phase: str, sparsity: dict, top1_final: Optional[float] = None,
                  top1_best: Optional[float] = None, **extra) -> None:
        """Record round ``r`` of an iterative method: its realised sparsity (every definition), its
        accuracy and the seconds of its phase (live or reused from the cache)."""
        info = self.phases().get(phase, {})
        self.round_records.append({"round": r, "phase": phase, "sparsity": dict(sparsity), "top1_final": top1_final,
                                   "top1_best": top1_best, "seconds": info.get("seconds", 0.0),
                                   "reused": info.get("reused", False), "device": info.get("device", self.device_name),
                                   **extra})
