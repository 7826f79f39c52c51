"""runtime.compile on the CPU: compiled training follows the eager loss trajectory, keeps masks,
checkpoints and a two-pass objective with a BN-frozen second pass working, and reports its
compile time apart. The model is deliberately tiny: inductor compiles C++ on the CPU, and the
first (cold) compilation costs tens of seconds on 2 cores; later sessions hit inductor's cache."""
import pytest
import torch
import torch.nn as nn

from baselines.selfdistill import DLB, DLBConfig
from bench import engine, interrupt
from bench.checkpoint import EpochCheckpoint
from bench.config import AugmentConfig, DatasetConfig, RuntimeConfig, SyntheticConfig, TrainConfig
from bench.data import load_dataset
from bench.engine import PhaseTimer
from bench.runtime import compile_module
from bench.losses import Distillation, KDConfig
from bench.masks import Masks

pytestmark = pytest.mark.slow

AUG = AugmentConfig(crop_padding=1, flip=True)
RECIPE = TrainConfig(epochs=2, batch_size=32, lr=0.05, warmup_epochs=0, schedule="cosine", milestones=[])


class Net(nn.Module):
    """conv-BN-ReLU twice, pooling, a linear head: every kind of layer the masks and BN code touch."""

    def __init__(self, classes: int = 4):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.linear = nn.Linear(8, classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.linear(x.mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    cfg = DatasetConfig(name="synthetic", augment=AUG,
                        synthetic=SyntheticConfig(num_classes=4, image_size=8, train_size=128, test_size=64))
    return load_dataset(cfg, tmp_path_factory.mktemp("d"), "cpu")


@pytest.fixture(autouse=True)
def warm_cache(monkeypatch):
    """inductor's default cache folder, so a second session does not compile from scratch (the runner
    of an earlier test may have pointed this process at a results folder that is gone)."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())
    interrupt.reset()
    yield
    interrupt.reset()


def fit(data, compile: str, *, checkpoint=None, stop_after=None):
    """Train Net (half its conv weights pruned) with DLB, its second view's BN statistics frozen."""
    torch.manual_seed(0)
    model = Net()
    masks = Masks(model)
    masks.prune_global([p.detach().abs() for p in masks.params], 0.5)
    objective = DLB(data, AUG, DLBConfig(second_view_updates_bn=False), seed=3)
    runtime = RuntimeConfig(device="cpu", compile=compile, deterministic=True)
    timer = PhaseTimer(torch.device("cpu"))
    steps = [0]

    class Count:
        def after_backward(self, loop, step):
            steps[0] += 1
            if steps[0] == stop_after:
                interrupt.request_stop()

    res = engine.train(model, data, RECIPE, runtime=runtime, timer=timer, seed=1, augment=AUG, objective=objective,
                       masks=masks, hooks=[Count()], checkpoint=checkpoint, log=lambda s: None)
    return model, masks, res, timer


def test_compiled_training_follows_the_eager_trajectory(data, tmp_path):
    eager, _, res_e, timer_e = fit(data, "off")
    model, masks, res_c, timer_c = fit(data, "on")
    for a, b in zip(res_e.history, res_c.history):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-3)
        assert b["test_top1"] == pytest.approx(a["test_top1"], abs=100 / 64 + 1e-9)   # at most one image flips
    for (name, a), b in zip(eager.state_dict().items(), model.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), rtol=1e-3, atol=1e-4), name
    # plain state-dict keys (no compiled wrapper's prefix), pruned weights still zero
    assert list(model.state_dict()) == list(eager.state_dict())
    assert all(torch.count_nonzero(p.detach()[m == 0]) == 0 for p, m in zip(masks.params, masks.masks))
    # compile time counted apart from training, none of it when compile is off
    assert timer_c.seconds("compile") > 0 and timer_e.seconds("compile") == 0
    # ... and the frozen second pass left BN's running statistics to the first pass alone
    assert int(model.bn1.num_batches_tracked) == int(eager.bn1.num_batches_tracked) == 2 * (128 // 32)


def test_compiled_training_resumes_from_a_mid_epoch_checkpoint(data, tmp_path):
    straight, _, res_a, _ = fit(data, "on")
    ckpt = EpochCheckpoint(tmp_path / "train.pt")
    with pytest.raises(interrupt.Interrupted):
        fit(data, "on", checkpoint=ckpt, stop_after=6)          # epoch 2, step 2
    interrupt.reset()
    resumed, _, res_b, _ = fit(data, "on", checkpoint=EpochCheckpoint(tmp_path / "train.pt"))
    assert res_b.history == res_a.history
    assert all(torch.equal(a, b) for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()))


def test_compiled_teacher_in_bf16_gives_the_autocast_logits(data):
    torch.manual_seed(5)
    teacher = Net().eval()
    x = data.train_x[:16].float() / 255
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = teacher(x).float()
        objective = Distillation(teacher, KDConfig(), gamma=0.5)
        objective.prepare("bf16", compile_module)
        got = objective.teacher_logits(x).float()
    assert not got.is_inference() and torch.allclose(got, expected, rtol=2e-2, atol=2e-2)
    assert all(p.dtype == torch.float32 for p in teacher.parameters())     # the teacher itself is untouched
