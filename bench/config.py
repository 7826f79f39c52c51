"""Typed configuration: plain YAML -> validated dataclasses (the grid and run ids: bench/grid.py).

Every section is a dataclass; its fields are the only keys allowed. A wrong key, a wrong type or an
impossible value raises ConfigError naming the key, the value and what is allowed. YAML is read
with ``yaml.safe_load`` only.

The core sections are defined here. A method that needs settings of its own declares a section
(``@register_section("cskd")`` on a dataclass, bench/registry.py; the built-in ones in torch-free
modules: bench/distill.py for teacher and kd, each method package's sections.py); this module reads
those section types from the registry, and from then on they are validated, overridable with
``--set`` and hashed into the identity of the methods that list them in ``SECTIONS``, like a core
section. ``check`` is the range check every section's ``validate`` uses. Importing this module
imports no torch and no method code.
"""
from __future__ import annotations

import copy
import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from . import datasets as D
from . import registry

CONFIG_DIR = Path(__file__).parent / "configs"

# Bump when a change to the shared engine, data path or models changes results: every run id and
# every cached artifact key includes it, so old records stop counting as done and old checkpoints
# stop being reused. A change to one method bumps that method's own ``VERSION`` instead.
HARNESS_VERSION = 2


class ConfigError(ValueError):
    """A config value that cannot be used; the message names the key, the value and the fix."""


# --------------------------------------------------------------------------- sections

@dataclass
class AugmentConfig:
    crop_padding: int = 4        # random crop after zero-padding by this many pixels (0: off)
    flip: bool = True            # random horizontal flip
    rotate_deg: float = 0.0      # random rotation in [-deg, deg] (COLT: 15 on CIFAR, 20 on Tiny)

    def validate(self, key):
        check(self.crop_padding >= 0, f"{key}.crop_padding", self.crop_padding, "an integer >= 0")
        check(0 <= self.rotate_deg <= 180, f"{key}.rotate_deg", self.rotate_deg, "a number in [0, 180]")


@dataclass
class SyntheticConfig:
    """The generated dataset used by smoke runs and tests (never passed off as real data)."""
    num_classes: int = 10
    image_size: int = 16
    train_size: int = 2000
    test_size: int = 500
    seed: int = 0                # data seed: every run sees the same synthetic images

    def validate(self, key):
        check(self.num_classes >= 2, f"{key}.num_classes", self.num_classes, "an integer >= 2")
        check(self.image_size >= 8, f"{key}.image_size", self.image_size, "an integer >= 8")
        check(self.train_size >= self.num_classes, f"{key}.train_size", self.train_size, ">= num_classes")
        check(self.test_size >= 1, f"{key}.test_size", self.test_size, "an integer >= 1")


@dataclass
class DatasetConfig:
    name: str = "cifar10"                 # a registered dataset (bench/datasets.py; python -m bench list)
    train_limit: Optional[int] = None     # keep this many train images (fixed-seed subset)
    test_limit: Optional[int] = None      # keep this many test images (fixed-seed subset)
    classes: Optional[list[int]] = None   # keep only these class ids, relabelled 0..k-1
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    # resize every image to this many pixels a side at load time (antialiased bilinear, e.g. Tiny
    # ImageNet at 32 px); null: the dataset's own size. Recorded in the record's data info.
    image_size: Optional[int] = None
    # evaluate after every epoch on this many test images only (a fixed-seed subset: the same images a
    # test_limit of this size keeps), and on the whole test split after the last epoch of every
    # training call, so that final accuracies are on every test image; null: every epoch on the
    # whole split. The best epoch is chosen on the subset (records say both sizes).
    monitor_limit: Optional[int] = None

    def validate(self, key):
        check(self.name in D.names(), f"{key}.name", self.name,
              f"one of {', '.join(D.names())} (a dataset of your own: --plugin FILE, docs/adding-a-dataset.md)")
        for k in ("train_limit", "test_limit", "monitor_limit"):
            v = getattr(self, k)
            check(v is None or v >= 1, f"{key}.{k}", v, "null or an integer >= 1")
        check(self.image_size is None or self.image_size >= 8, f"{key}.image_size", self.image_size,
               "null or an integer >= 8")
        if self.classes is not None:
            check(len(self.classes) >= 2 and len(set(self.classes)) == len(self.classes)
                   and min(self.classes) >= 0, f"{key}.classes", self.classes,
                   "null or a list of at least 2 distinct class ids >= 0")


ARCHS = ("resnet18", "resnet34", "resnet50", "resnet_small")


@dataclass
class ModelConfig:
    arch: Literal["resnet18", "resnet34", "resnet50", "resnet_small"] = "resnet18"


@dataclass
class TrainConfig:
    """One training recipe (SGD). Defaults: the COLT lab's recipe (docs/method.md, "Recipe")."""
    epochs: int = 50
    batch_size: int = 256
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0            # linear warm-up, per iteration
    schedule: Literal["step", "cosine", "constant"] = "step"
    # Epochs (0-indexed) at which the LR is multiplied by gamma, for "step". COLT's effective drops.
    milestones: list[int] = field(default_factory=lambda: [21, 31, 46])
    gamma: float = 0.2                    # LR factor at each milestone
    label_smoothing: float = 0.0
    drop_last: bool = True                # drop the last partial batch of an epoch

    def validate(self, key):
        check(self.epochs >= 1, f"{key}.epochs", self.epochs, "an integer >= 1 (this phase trains)")
        check(self.batch_size >= 1, f"{key}.batch_size", self.batch_size, "an integer >= 1")
        check(self.lr > 0, f"{key}.lr", self.lr, "a number > 0")
        check(0 <= self.momentum < 1, f"{key}.momentum", self.momentum, "a number in [0, 1)")
        check(self.weight_decay >= 0, f"{key}.weight_decay", self.weight_decay, "a number >= 0")
        check(0 <= self.warmup_epochs <= self.epochs, f"{key}.warmup_epochs", self.warmup_epochs,
               f"a number in [0, epochs={self.epochs}]")
        check(0 < self.gamma <= 1, f"{key}.gamma", self.gamma, "a number in (0, 1]")
        check(all(m >= 1 for m in self.milestones) and self.milestones == sorted(self.milestones),
               f"{key}.milestones", self.milestones, "increasing epoch numbers >= 1")
        check(0 <= self.label_smoothing < 1, f"{key}.label_smoothing", self.label_smoothing, "[0, 1)")


@dataclass
class PruneConfig:
    sparsity: float = 0.9                 # the target: a fraction of ``measure``'s weights that are zero
    # The prunable set: conv (paper, COLT), conv+linear (ProsPr/EPSD), conv-noshortcut (EGP: the
    # convs followed by a ReLU, i.e. every conv but the 1x1 shortcuts).
    layers: Literal["conv", "conv+linear", "conv-noshortcut"] = "conv"
    # What every target sparsity (grid.sparsities, prune.sparsity) counts: zeros over the weights of
    # this set. overall = conv + linear + BatchNorm weights (COLT's and the paper's figure): one axis
    # for every method. Each method still prunes only its own prunable set and solves for the
    # fraction inside it that lands the network on the target; prunable = the old per-method
    # fractions (not comparable across methods with different sets). Part of every pruning run's
    # identity (as `sparsity_measure`).
    measure: Literal["overall", "prunable", "conv", "conv+linear", "conv-noshortcut"] = "overall"

    def validate(self, key):
        check(0 <= self.sparsity < 1, f"{key}.sparsity", self.sparsity, "a number in [0, 1)")


BUDGET_BASES = ("equal", "official", "retrain-matched")      # = bench.budget


@dataclass
class BudgetConfig:
    """How rows that train one schedule from initialisation are budgeted (bench/budget.py)."""
    # equal: the proposed pipeline's student budget (pretrain + tgp.finetune + retrain, in full-data
    # epochs), each row's own recipe stretched to it; official: each method's own recipe;
    # retrain-matched: the retrain recipe alone (older records' "matched", labelled <method>-matched)
    basis: Literal["equal", "official", "retrain-matched"] = "equal"


@dataclass
class RuntimeConfig:
    device: str = "auto"                 # auto | cpu | cuda | cuda:N
    amp: Literal["auto", "bf16", "off"] = "auto"     # auto: bf16 on CUDA, off on CPU
    # auto: on (CUDA and CPU): oneDNN's convolutions are 5-30% faster on channels_last CPU tensors too
    # (docs/performance.md); changes float rounding at most
    channels_last: Literal["auto", "on", "off"] = "auto"
    # torch.compile of the training and evaluation forward/backward (and the teacher's forward).
    # auto: off, measured: on one H100 (ResNet-18, CIFAR-10, bf16) compiled training ran at 14,937
    # images/s against 17,481 eager, after 28 s of compiling (docs/performance.md); on the CPU it costs
    # minutes. Compile time is recorded as its own phase; changes float rounding at most (not in the run id).
    compile: Literal["auto", "on", "off"] = "auto"
    # Speed candidates toward 1.5 s per ResNet-18 epoch (issue 20; docs/performance.md), off until a
    # GPU measures them faster; none changes a result beyond float rounding (not in the run id).
    # on: each full-batch training step replayed as one CUDA graph (CUDA only; cross-entropy and
    # distillation objectives without an after-backward hook; anything else runs eagerly)
    cuda_graphs: Literal["off", "on"] = "off"
    teacher_stream: Literal["off", "on"] = "off"     # on: the teacher's forward on a second CUDA stream, beside the student's
    teacher_fold_bn: Literal["off", "on"] = "off"    # on: the frozen teacher's BatchNorm folded into its convolutions
    deterministic: bool = False          # torch.use_deterministic_algorithms (slower)
    eval_batch_size: int = 1024          # test images per evaluation forward pass
    checkpoint_every_s: float = 60.0     # epoch checkpoints at most this often (0: every epoch); a stop always saves
    nonfinite_check_steps: int = 20      # read the NaN/inf flag every this many steps (one host sync each)
    heartbeat_s: float = 10.0            # how often a runner refreshes its claims and locks
    stale_after_s: float = 120.0         # a claim or lock not refreshed for this long is taken over

    def validate(self, key):
        check(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
               f"{key}.device", self.device, "auto, cpu, cuda or cuda:N")
        check(self.eval_batch_size >= 1, f"{key}.eval_batch_size", self.eval_batch_size, ">= 1")
        check(self.checkpoint_every_s >= 0, f"{key}.checkpoint_every_s", self.checkpoint_every_s, "a number >= 0")
        check(self.nonfinite_check_steps >= 1, f"{key}.nonfinite_check_steps", self.nonfinite_check_steps, ">= 1")
        check(self.heartbeat_s > 0, f"{key}.heartbeat_s", self.heartbeat_s, "a number > 0")
        check(self.stale_after_s > 2 * self.heartbeat_s, f"{key}.stale_after_s", self.stale_after_s,
               f"a number > 2 x heartbeat_s ({2 * self.heartbeat_s:g})")


@dataclass
class SlurmConfig:
    """How `python -m bench run --executor slurm` asks SLURM for jobs. Not part of any run's
    identity: where a cell runs does not change its result (docs/cluster.md)."""
    partition: Optional[str] = None       # sbatch --partition (null: the cluster's default)
    time_min: int = 1440                  # time limit per job, minutes; a job near it checkpoints and requeues itself
    gpus_per_job: int = 1                 # 1, or 0 for CPU jobs: a cell trains on one device, so a job runs on one GPU
    cpus_per_job: int = 8                 # CPUs per job (data augmentation runs on the GPU; CPU jobs use them as threads)
    mem_gb: Optional[float] = None        # memory per job, GB (null: the partition's default)
    # Seconds before the time limit at which SLURM sends the warning signal (USR2): enough for the
    # current step to finish and one epoch checkpoint to be written.
    signal_delay_s: int = 120
    max_requeues: int = 3                 # times a job may requeue itself after hitting its time limit (preemptions do not count)
    array_parallelism: Optional[int] = None   # at most this many array tasks run at once (null: no limit of ours)
    # Further sbatch options, without the leading dashes, e.g. {account: abc, qos: high, constraint: a100}.
    sbatch: dict = field(default_factory=dict)
    # Shell lines run at the start of each job before Python (module load ..., source venv/bin/activate).
    setup: list[str] = field(default_factory=list)

    def validate(self, key):
        check(self.time_min >= 1, f"{key}.time_min", self.time_min, "an integer >= 1 (minutes)")
        check(self.gpus_per_job in (0, 1), f"{key}.gpus_per_job", self.gpus_per_job,
               "1 (a GPU job) or 0 (a CPU job): a cell trains on one device; for more GPUs, more jobs (--workers)")
        check(self.cpus_per_job >= 1, f"{key}.cpus_per_job", self.cpus_per_job, "an integer >= 1")
        check(self.mem_gb is None or self.mem_gb > 0, f"{key}.mem_gb", self.mem_gb, "null or a number > 0")
        check(self.signal_delay_s >= 0 and self.signal_delay_s < 60 * self.time_min, f"{key}.signal_delay_s",
               self.signal_delay_s, f"seconds in [0, time_min x 60 = {60 * self.time_min})")
        check(self.max_requeues >= 0, f"{key}.max_requeues", self.max_requeues, "an integer >= 0")
        check(self.array_parallelism is None or self.array_parallelism >= 1, f"{key}.array_parallelism",
               self.array_parallelism, "null or an integer >= 1")


@dataclass
class MethodEntry:
    """A grid column: an implemented method, an optional label, optional config overrides."""
    name: str
    label: Optional[str] = None
    set: dict = field(default_factory=dict)
    # this entry's targets (null: grid.sparsities), e.g. the core rows of a curve at more targets
    sparsities: Optional[list[float]] = None

    def validate(self, key):
        for s in self.sparsities or ():
            check(isinstance(s, (int, float)) and 0 <= s < 1, f"{key}.sparsities", s, "numbers in [0, 1)")

    @property
    def display(self) -> str:
        return self.label or self.name




@dataclass
class GridConfig:
    datasets: list[str] = field(default_factory=list)     # empty: the dataset section's name
    methods: list[MethodEntry] = field(default_factory=list)
    sparsities: list[float] = field(default_factory=list)  # empty: prune.sparsity
    seeds: list[int] = field(default_factory=list)         # empty: seed

    def validate(self, key):
        for d in self.datasets:
            check(d in D.names(), f"{key}.datasets", d, f"one of {', '.join(D.names())}")
        for s in self.sparsities:
            check(isinstance(s, (int, float)) and 0 <= s < 1, f"{key}.sparsities", s, "numbers in [0, 1)")


@dataclass
class Config:
    name: str = "unnamed"
    seed: int = 0
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pretrain: TrainConfig = field(default_factory=TrainConfig)   # the dense model
    retrain: TrainConfig = field(default_factory=TrainConfig)    # after pruning
    prune: PruneConfig = field(default_factory=PruneConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)   # rows trained from initialisation
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    slurm: SlurmConfig = field(default_factory=SlurmConfig)      # --executor slurm only; never in a run's identity
    grid: GridConfig = field(default_factory=GridConfig)
    # Method-owned sections (name -> dataclass instance), every registered one, defaults filled in.
    # Read them as attributes (``cfg.tgp.beta``); in YAML they are top-level sections like the rest.
    sections: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        for name, cls in sorted(method_sections().items()):
            self.sections.setdefault(name, cls())

    def __getattr__(self, name: str):
        sections = self.__dict__.get("sections")
        if sections is not None and name in sections:
            return sections[name]
        raise AttributeError(f"{type(self).__name__} has no attribute or config section {name!r}")


# --------------------------------------------------------------------------- method-owned sections

_CORE = [f.name for f in dataclasses.fields(Config) if f.name != "sections"]
registry.reserve_sections(_CORE)


def method_sections() -> dict[str, type]:
    """Every method-owned section by name, sorted, from the registry (which loads the built-in methods once)."""
    return dict(sorted(registry.sections().items()))


def _fields_of(cls) -> dict[str, Any]:
    """{key: type} of a section; for ``Config`` the core sections plus every method-owned one."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    if cls is Config:
        names.remove("sections")
        return {**{n: hints[n] for n in names}, **method_sections()}
    return {n: hints[n] for n in names}


# --------------------------------------------------------------------------- validation

# Field metadata for an option added after records exist: it enters run ids and stage keys only when
# set away from its default, so every record made before it keeps its run id (bench/stages.py).
ADDED_LATER = {"identity": "omit-at-default"}


def check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"config key '{key}' has value {value!r}; allowed: {allowed}")


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if dataclasses.is_dataclass(tp):
        return f"a mapping with keys {', '.join(_fields_of(tp))}"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string",
            dict: "a mapping"}.get(tp, str(tp))


# YAML 1.1 (what PyYAML reads) has no float without a dot: 5e-4 arrives as the string '5e-4'.
_FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
# ... and it reads on/off/yes/no as booleans, so `amp: off` arrives as False.
_BOOL_WORDS = {True: ("on", "yes", "true"), False: ("off", "no", "false")}


def _coerce(tp, value, key):
    """Check ``value`` against type ``tp`` (and build nested dataclasses)."""
    origin = typing.get_origin(tp)
    bad = ConfigError(f"config key '{key}' has value {value!r}; allowed: {_type_name(tp)}")
    if tp is MethodEntry:
        if isinstance(value, str):
            return MethodEntry(name=value)
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' has value {value!r}; allowed: a method name or "
                              "a mapping with keys name, label, set")
        return from_dict(MethodEntry, value, key)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise bad
        return from_dict(tp, value, key)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if isinstance(value, bool):           # YAML 1.1 read the word `off` (or on/yes/no) as a boolean
            value = next((w for w in _BOOL_WORDS[value] if w in allowed), value)
        if value not in allowed:
            raise bad
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise bad
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, key)
            except ConfigError:
                pass
        raise bad
    if origin is list:
        if not isinstance(value, list):
            raise bad
        (inner,) = typing.get_args(tp)
        return [_coerce(inner, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if tp is float:
        if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
            return float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad
        return value
    if tp is dict:
        if not isinstance(value, dict):
            raise bad
        return dict(value)
    raise TypeError(f"unsupported config type {tp} at {key}")


def from_dict(cls, data: dict, key: str = ""):
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types."""
    fields = _fields_of(cls)
    for k in data:
        if k not in fields:
            where = f"'{key}.{k}'" if key else f"'{k}'"
            raise ConfigError(f"unknown config key {where}; allowed keys{' in ' + repr(key) if key else ''}: "
                              f"{', '.join(fields)}")
    kwargs = {k: _coerce(fields[k], v, f"{key}.{k}" if key else k) for k, v in data.items()}
    if cls is Config:
        kwargs["sections"] = {name: kwargs.pop(name) for name in method_sections() if name in kwargs}
    try:
        obj = cls(**kwargs)
    except TypeError as e:  # a required field is missing
        raise ConfigError(f"config section '{key or cls.__name__}': {e}") from None
    if hasattr(obj, "validate"):
        obj.validate(key or cls.__name__.lower())
    return obj


def to_dict(obj) -> dict:
    """A plain mapping of ``obj``; a Config's method-owned sections sit at the top level, as in YAML.

    ``dataset.image_size`` and ``dataset.monitor_limit`` are left out while null: run ids and cache keys
    are hashed from these mappings, and the configs made before those keys existed must keep theirs."""
    d = dataclasses.asdict(obj)
    if isinstance(obj, Config):
        d.update(d.pop("sections"))
    dataset = d.get("dataset") if isinstance(obj, Config) else d if isinstance(obj, DatasetConfig) else None
    for k in ("image_size", "monitor_limit"):
        if dataset is not None and k in dataset and dataset[k] is None:
            del dataset[k]
    return d


# --------------------------------------------------------------------------- loading

def _yaml_problem(e: yaml.YAMLError) -> str:
    """A YAML error in one line: what and where."""
    mark = getattr(e, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    what = getattr(e, "problem", None) or str(e).splitlines()[0]
    return where + " ".join(str(what).split())

def parse_override(text: str) -> tuple[str, Any]:
    """``train.epochs=3`` -> ("train.epochs", 3); the value is read as YAML (safe_load)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key.path=value (e.g. retrain.epochs=3)")
    k, v = text.split("=", 1)
    try:
        return k.strip(), yaml.safe_load(v)
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: the value is not valid YAML ({_yaml_problem(e)}); quote it or "
                          "fix the brackets (e.g. grid.seeds=[0,1])") from None


def set_dotted(data: dict, dotted: str, value: Any, cls=Config) -> None:
    """Set ``a.b.c`` in a raw config mapping, checking each key against the dataclass schema."""
    parts = dotted.split(".")
    node, tp, path = data, cls, []
    for i, part in enumerate(parts):
        fields = _fields_of(tp) if dataclasses.is_dataclass(tp) else None
        if fields is not None and part not in fields:
            raise ConfigError(f"unknown config key '{'.'.join(path + [part])}' in override {dotted}={value!r}; "
                              f"allowed keys here: {', '.join(fields)}")
        path.append(part)
        if i == len(parts) - 1:
            node[part] = value
            return
        tp = fields[part]
        if not dataclasses.is_dataclass(tp):
            raise ConfigError(f"config key '{'.'.join(path)}' is not a section; cannot set {dotted}")
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"config key '{'.'.join(path)}' must be a mapping to set {dotted}")


def resolve_config_path(path: str | Path) -> Path:
    """A path as given, or the name of a shipped preset (``smoke`` -> bench/configs/smoke.yaml)."""
    p = Path(path)
    if p.is_file():
        return p
    if p.exists():
        raise ConfigError(f"config path {str(path)!r} is not a file; give a YAML file or a preset name")
    shipped = CONFIG_DIR / (p.name if p.suffix else p.name + ".yaml")
    if shipped.exists():
        return shipped
    presets = ", ".join(sorted(q.stem for q in CONFIG_DIR.glob("*.yaml")))
    raise ConfigError(f"config file {str(path)!r} not found (also looked in {CONFIG_DIR}); "
                      f"shipped presets: {presets}")


def load_raw(path: str | Path) -> dict:
    p = resolve_config_path(path)
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {p} is not valid YAML ({_yaml_problem(e)}); tags such as !!python/... "
                          "are refused: configs are plain YAML") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {p} cannot be read: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping at the top level, not {type(data).__name__}")
    return data


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    data = load_raw(path) if path is not None else {}
    for text in overrides:
        k, v = parse_override(text)
        set_dotted(data, k, v)
    return from_dict(Config, data)




# --------------------------------------------------------------------------- runtime policy



def upgrade(raw: dict) -> dict:
    """A config mapping as an older record stored it, in the current schema (the same runs):
    ``grid.sparsity_measure`` became ``prune.measure``; ``sd.budget``
    (official | matched) became ``budget.basis`` (official | retrain-matched), and the SD rows' prunable
    set, then always conv + linear, is ``pai.layers`` explicitly (its default now follows the grid)."""
    d = copy.deepcopy(raw)
    grid = d.get("grid")
    if isinstance(grid, dict) and "sparsity_measure" in grid:
        d["prune"] = {**d.get("prune", {}), "measure": grid.pop("sparsity_measure")}
    sd = d.get("sd")
    if isinstance(sd, dict) and "budget" in sd:
        old = sd.pop("budget")
        d["budget"] = {**d.get("budget", {}), "basis": {"matched": "retrain-matched"}.get(old, old)}
        if isinstance(d.get("pai"), dict) and d["pai"].get("layers") is None:
            d["pai"] = {**d["pai"], "layers": "conv+linear"}
    return d


def config_copy(cfg: Config) -> Config:
    return copy.deepcopy(cfg)
