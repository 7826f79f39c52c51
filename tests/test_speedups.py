"""The speed candidates of issue 20, each behind a runtime switch (docs/performance.md):

- ``runtime.cuda_graphs``: its guards, and on the CPU the whole graphed-step sequence (warm-up
  steps, static input buffers, a tensor learning rate filled by the scheduler, gradients zeroed in
  place, an eager tail batch, checkpoints with a float learning rate) with the step body called
  where a replay would be: the same loss trajectory and weights as the eager loop. The capture and
  replay need CUDA (the last tests, skipped here: that path has never run on this machine).
- ``runtime.teacher_fold_bn``: the folded teacher gives the same logits; training with it follows
  the same trajectory.
- ``runtime.teacher_stream``: a no-op on the CPU (the same trajectory, exactly); CUDA test skipped.
"""
import pytest
import torch
import torch.nn as nn

from baselines.selfdistill import DLB, DLBConfig
from bench import engine, graphs, interrupt
from bench.checkpoint import EpochCheckpoint
from bench.config import AugmentConfig, DatasetConfig, RuntimeConfig, SyntheticConfig, TrainConfig
from bench.data import load_dataset
from bench.engine import PhaseTimer
from bench.speed import StepProfile
from bench.losses import CrossEntropy, Distillation, KDConfig
from bench.masks import Masks
from bench.models import build_model, fold_batchnorm

AUG = AugmentConfig(crop_padding=1, flip=True)
# 100 images, batch 32, drop_last off: three full batches (the graphed ones after the warm-up) and a
# tail of 4 that runs eagerly in between, every epoch.
RECIPE = TrainConfig(epochs=3, batch_size=32, lr=0.05, warmup_epochs=1, schedule="cosine", milestones=[],
                     drop_last=False)
CUDA = torch.cuda.is_available()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    cfg = DatasetConfig(name="synthetic", augment=AUG,
                        synthetic=SyntheticConfig(num_classes=4, image_size=8, train_size=100, test_size=32))
    return load_dataset(cfg, tmp_path_factory.mktemp("d"), "cpu")


@pytest.fixture(autouse=True)
def clean_stop():
    interrupt.reset()
    yield
    interrupt.reset()


def teacher_of(data):
    torch.manual_seed(7)
    t = build_model("resnet_small", data.num_classes)
    with torch.no_grad():          # BN statistics far from the identity, so that folding has work to do
        for m in t.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return t.eval()


def fit(data, *, graphs_on=False, kd=False, runtime=None, checkpoint=None, stop_after=None, log=None):
    torch.manual_seed(0)
    model = build_model("resnet_small", data.num_classes)
    masks = Masks(model)
    masks.prune_global([p.detach().abs() for p in masks.params], 0.7)
    objective = Distillation(teacher_of(data), KDConfig(), gamma=0.6) if kd else None
    runtime = runtime or RuntimeConfig(device="cpu", cuda_graphs="on" if graphs_on else "off")
    calls = [0]

    class Objective(type(objective) if objective is not None else CrossEntropy):
        GRAPH_SAFE = True

        def __call__(self, net, batch):      # counts steps (for stop_after) without an after-backward hook
            calls[0] += 1
            if calls[0] == stop_after:
                interrupt.request_stop()
            return super().__call__(net, batch)

    obj = objective or CrossEntropy()
    obj.__class__ = Objective
    res = engine.train(model, data, RECIPE, runtime=runtime, timer=PhaseTimer(torch.device("cpu")), seed=1,
                       augment=AUG, objective=obj, masks=masks, checkpoint=checkpoint,
                       log=log or (lambda s: None))
    return model, masks, res


@pytest.fixture
def emulate_graphs(monkeypatch):
    """Let the graphed path run on the CPU: eligibility forced, GraphedStep without capture (the
    engine passes capture=False on a CPU device); the made GraphedSteps are kept for inspection."""
    made = []
    real = graphs.GraphedStep

    def keep(*a, **kw):
        g = real(*a, **kw)
        made.append(g)
        return g

    monkeypatch.setattr(graphs, "why_not", lambda *a: None)
    monkeypatch.setattr(graphs, "GraphedStep", keep)
    return made


def same_run(a, b):
    """Bit-identical: the same losses, accuracies, learning rates and final weights."""
    (ma, _, ra), (mb, _, rb) = a, b
    assert len(ra.history) == len(rb.history) == RECIPE.epochs
    for x, y in zip(ra.history, rb.history):
        assert (y["train_loss"], y["train_top1"], y["lr"]) == (x["train_loss"], x["train_top1"], x["lr"])
    for (name, x), y in zip(ma.state_dict().items(), mb.state_dict().values()):
        assert torch.equal(x, y), name


@pytest.mark.parametrize("kd", [False, True], ids=["cross-entropy", "distillation"])
def test_graphed_step_sequence_trains_the_eager_trajectory(data, emulate_graphs, kd):
    eager = fit(data, kd=kd)
    assert not emulate_graphs                          # cuda_graphs off: no GraphedStep at all
    graphed = fit(data, graphs_on=True, kd=kd)
    (g,) = emulate_graphs
    # 3 epochs x 3 full batches: 3 eager warm-up steps, 6 through the static buffers; tails eager
    assert (g.eager_steps, g.replays, g.capture) == (graphs.WARMUP, 6, False)
    same_run(eager, graphed)
    model, masks, _ = graphed
    assert all(torch.count_nonzero(p.detach()[m == 0]) == 0 for p, m in zip(masks.params, masks.masks))


def test_graphed_run_checkpoints_resume_eagerly(data, emulate_graphs, tmp_path):
    straight = fit(data)
    with pytest.raises(interrupt.Interrupted):
        fit(data, graphs_on=True, checkpoint=EpochCheckpoint(tmp_path / "t.pt"), stop_after=6)   # epoch 2
    saved = torch.load(tmp_path / "t.pt", weights_only=True)
    assert all(isinstance(g["lr"], float) for g in saved["optimizer"]["param_groups"])
    interrupt.reset()
    resumed = fit(data, checkpoint=EpochCheckpoint(tmp_path / "t.pt"))       # graphs off now
    same_run(straight, resumed)


def test_guards_name_why_a_call_runs_eagerly():
    rt = RuntimeConfig(cuda_graphs="on")
    gpu, cpu = torch.device("cuda"), torch.device("cpu")
    ce = CrossEntropy()
    assert graphs.why_not(rt, gpu, ce, False, None) is None
    assert "not CUDA" in graphs.why_not(rt, cpu, ce, False, None)
    assert "compile" in graphs.why_not(RuntimeConfig(cuda_graphs="on", compile="on"), gpu, ce, False, None)
    assert "profile" in graphs.why_not(rt, gpu, ce, False, StepProfile(cpu))
    assert "step event" in graphs.why_not(rt, gpu, ce, True, None)
    dlb = DLB.__new__(DLB)                             # self-distillation: memories, extra draws
    assert "not declared graph-safe" in graphs.why_not(rt, gpu, dlb, None, None)

    class Subclass(Distillation):                     # safety is declared per class, not inherited
        pass

    assert "not declared graph-safe" in graphs.why_not(rt, gpu, Subclass.__new__(Subclass), None, None)


def test_graphs_on_a_cpu_run_train_eagerly_and_say_why(data):
    lines = []
    on = fit(data, runtime=RuntimeConfig(device="cpu", cuda_graphs="on"), log=lines.append)
    same_run(fit(data), on)
    assert any("CUDA graphs off for this call: the device is cpu" in l for l in lines)


def test_tensor_lr_is_filled_by_the_scheduler_and_saved_as_a_float():
    p = nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (s + 1))
    graphs.tensor_lr(opt, torch.device("cpu"))
    lr = opt.param_groups[0]["lr"]
    p.grad = torch.zeros(3)
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] is lr and lr.item() == pytest.approx(0.05)
    assert graphs.plain_lr(opt.state_dict())["param_groups"][0]["lr"] == pytest.approx(0.05)


def test_a_scheduler_that_assigns_floats_still_feeds_the_tensor():
    p = nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([p], lr=0.1)
    graphs.tensor_lr(opt, torch.device("cpu"))
    t = opt.param_groups[0]["lr"]
    opt.param_groups[0]["lr"] = 0.025                  # what an older torch's LR scheduler does
    graphs.keep_tensor_lr(opt, [t])
    assert opt.param_groups[0]["lr"] is t and t.item() == pytest.approx(0.025)


def test_folded_teacher_gives_the_same_logits(data):
    teacher = teacher_of(data)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    folded = fold_batchnorm(teacher)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in teacher.modules()) == 12     # stem, 4 blocks x 2, 3 shortcuts
    x = data.train_x[:16].float() / 255
    with torch.no_grad():
        assert torch.allclose(folded(x), teacher(x), rtol=1e-4, atol=1e-5)
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())   # the teacher is untouched
    big = build_model("resnet50", 10).eval()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fold_batchnorm(big).modules())


def test_fold_bn_switch_keeps_the_distillation_trajectory(data):
    """Folding changes the teacher's logits by float rounding (1e-7 here); a tiny network trained at
    a high learning rate amplifies that over later epochs, so the first epoch (4 steps) is compared
    tightly and the rest loosely."""
    off = fit(data, kd=True)
    on = fit(data, kd=True, runtime=RuntimeConfig(device="cpu", teacher_fold_bn="on"))
    (first_off, *rest_off), (first_on, *rest_on) = off[2].history, on[2].history
    assert first_on["train_loss"] == pytest.approx(first_off["train_loss"], rel=1e-6)
    for a, b in zip(rest_off, rest_on):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=2e-2)


def test_teacher_stream_is_a_no_op_on_the_cpu(data):
    off = fit(data, kd=True)
    on = fit(data, kd=True, runtime=RuntimeConfig(device="cpu", teacher_stream="on"))
    same_run(off, on)


# --------------------------------------------------------------------------- CUDA only

def _cuda_fit(tmp_path, **runtime):
    dcfg = DatasetConfig(name="synthetic", augment=AUG,
                         synthetic=SyntheticConfig(num_classes=4, image_size=8, train_size=100, test_size=32))
    d = load_dataset(dcfg, tmp_path, "cuda")
    torch.manual_seed(0)
    model = build_model("resnet_small", 4).cuda()
    teacher = teacher_of(d).cuda()
    masks = Masks(model)
    masks.prune_global([p.detach().abs() for p in masks.params], 0.7)
    rt = RuntimeConfig(device="cuda", deterministic=True, **runtime)
    return engine.train(model, d, RECIPE, runtime=rt, timer=PhaseTimer(torch.device("cuda")), seed=1, augment=AUG,
                        objective=Distillation(teacher, KDConfig(), gamma=0.6), masks=masks, log=lambda s: None)


@pytest.mark.skipif(not CUDA, reason="CUDA graphs and streams need a CUDA device (never run on this machine)")
@pytest.mark.parametrize("switch", [{"cuda_graphs": "on"}, {"teacher_stream": "on"},
                                    {"cuda_graphs": "on", "teacher_stream": "on"}], ids=str)
def test_cuda_switches_keep_the_trajectory(tmp_path, switch):
    off, on = _cuda_fit(tmp_path), _cuda_fit(tmp_path, **switch)
    for a, b in zip(off.history, on.history):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=2e-2)
