"""Losses: normalisation, KL / CA-KLD / Hinton KD against hand-computed values, the objectives."""
import copy
import math
from typing import NamedTuple

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.distill import KDConfig
from bench.losses import (CrossEntropy, Distillation, ca_kld, hinton_kd, kl, normalize_logits,
                          teacher_confidence, teacher_mean_confidence, tempered_log_probs)


class Batch(NamedTuple):
    x: torch.Tensor
    y: torch.Tensor
    idx: torch.Tensor


def close(a, b, tol=1e-6):
    return torch.allclose(torch.as_tensor(a, dtype=torch.float64),
                          torch.as_tensor(b, dtype=torch.float64), rtol=tol, atol=tol)


def logits_pair(b=6, c=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, generator=g) * 3, torch.randn(b, c, generator=g) * 3


# --------------------------------------------------------------------------- normalisation

def test_normalize_zero_mean_unit_population_std():
    z = torch.randn(8, 10) * 5 + 3
    n = normalize_logits(z)
    assert close(n.mean(-1), torch.zeros(8), 1e-5)
    assert close(n.std(-1, correction=0), torch.ones(8), 1e-5)


def test_normalize_invariant_to_shift_and_positive_scale():
    z = torch.randn(4, 7)
    n = normalize_logits(z)
    assert torch.allclose(normalize_logits(z + 11.5), n, atol=1e-5)
    assert torch.allclose(normalize_logits(z * 3.7), n, atol=1e-5)
    assert torch.allclose(normalize_logits(z * 0.2 - 4.0), n, atol=1e-5)
    # per-row constants too
    assert torch.allclose(normalize_logits(z * torch.rand(4, 1) + 0.1 + torch.randn(4, 1)), n, atol=1e-5)


def test_normalize_uses_population_std():
    # [0, 2]: mean 1, population std 1 -> [-1, 1] (the unbiased std sqrt(2) would give +-0.707)
    assert close(normalize_logits(torch.tensor([[0.0, 2.0]])), [[-1.0, 1.0]], 1e-6)


def test_tempered_log_probs():
    z = torch.tensor([[0.0, 2.0]])
    assert close(tempered_log_probs(z, 2.0, normalize=True), F.log_softmax(torch.tensor([[-0.5, 0.5]]), -1))
    assert close(tempered_log_probs(z, 2.0, normalize=False), F.log_softmax(torch.tensor([[0.0, 1.0]]), -1))


# --------------------------------------------------------------------------- hand-computed KL

P_T, P_S = [0.5, 0.3, 0.2], [0.2, 0.2, 0.6]
FWD = sum(p * math.log(p / q) for p, q in zip(P_T, P_S))   # KL(P_T || P_S)
REV = sum(q * math.log(q / p) for p, q in zip(P_T, P_S))   # KL(P_S || P_T)


def probs_as_logits():
    # log p are logits whose softmax (T=1, no normalisation) is p exactly
    return torch.tensor([P_S]).log(), torch.tensor([P_T]).log()


def test_kl_hand_computed():
    s, t = probs_as_logits()
    assert close(kl(t, s), [FWD])
    assert close(kl(s, t), [REV])
    assert close(kl(t, t), [0.0])


def test_ca_kld_and_hinton_hand_computed_3_classes():
    s, t = probs_as_logits()
    kw = dict(temperature=1.0, normalize=False)
    assert close(ca_kld(s, t, 0.0, **kw), FWD)
    assert close(ca_kld(s, t, 1.0, **kw), REV)
    assert close(ca_kld(s, t, 0.25, **kw), 0.25 * REV + 0.75 * FWD)
    assert close(hinton_kd(s, t, **kw), FWD)


def test_ca_kld_hand_computed_normalised_2_classes():
    # student [0, 2] -> normalised [-1, 1] -> /T=2 -> [-0.5, 0.5]; teacher [3, 1] -> [0.5, -0.5]
    e = math.exp(1.0)
    ps = [1 / (1 + e), e / (1 + e)]
    pt = [e / (1 + e), 1 / (1 + e)]
    fwd = sum(p * math.log(p / q) for p, q in zip(pt, ps))
    rev = sum(q * math.log(q / p) for p, q in zip(pt, ps))
    s, t = torch.tensor([[0.0, 2.0]]), torch.tensor([[3.0, 1.0]])
    g = 0.3
    want = 4.0 * (g * rev + (1 - g) * fwd)                   # T^2 = 4
    assert close(ca_kld(s, t, g, temperature=2.0), want)
    assert close(ca_kld(s, t, g, temperature=2.0, t2_scale=False), want / 4.0)


# --------------------------------------------------------------------------- CA-KLD properties

def test_ca_kld_zero_for_identical_positive_otherwise():
    s, t = logits_pair()
    for g in (0.0, 0.4, 1.0):
        assert abs(ca_kld(s, s.clone(), g, temperature=3.0).item()) < 1e-6
        assert ca_kld(s, t, g, temperature=3.0).item() > 0


def test_ca_kld_endpoints_are_forward_and_reverse_kl():
    s, t = logits_pair()
    for norm in (True, False):
        s_log = tempered_log_probs(s, 3.0, norm)
        t_log = tempered_log_probs(t, 3.0, norm)
        kw = dict(temperature=3.0, normalize=norm, t2_scale=False)
        assert close(ca_kld(s, t, 0.0, **kw), kl(t_log, s_log).mean())
        assert close(ca_kld(s, t, 1.0, **kw), kl(s_log, t_log).mean())


def test_ca_kld_linear_in_gamma():
    s, t = logits_pair()
    f0 = ca_kld(s, t, 0.0, temperature=3.0)
    f1 = ca_kld(s, t, 1.0, temperature=3.0)
    for g in (0.1, 0.5, 0.83):
        assert close(ca_kld(s, t, g, temperature=3.0), (1 - g) * f0 + g * f1, 1e-5)


def test_ca_kld_per_sample_gamma():
    s, t = logits_pair(b=4)
    assert close(ca_kld(s, t, torch.full((4,), 0.37), temperature=3.0),
                 ca_kld(s, t, 0.37, temperature=3.0))
    # mixed gammas: each sample gets its own mix
    gam = torch.tensor([0.0, 1.0, 0.5, 0.2])
    per = [ca_kld(s[i:i + 1], t[i:i + 1], float(gam[i]), temperature=3.0) for i in range(4)]
    assert close(ca_kld(s, t, gam, temperature=3.0), torch.stack(per).mean())
    with pytest.raises(ValueError, match="shape"):
        ca_kld(s, t, torch.full((3,), 0.5), temperature=3.0)


def test_t2_scaling():
    s, t = logits_pair()
    for T in (1.5, 3.0, 5.0):
        on = ca_kld(s, t, 0.4, temperature=T, t2_scale=True)
        off = ca_kld(s, t, 0.4, temperature=T, t2_scale=False)
        assert close(on, off * T * T)
        assert close(hinton_kd(s, t, temperature=T), hinton_kd(s, t, temperature=T, t2_scale=False) * T * T)


def test_hinton_kd_equals_ca_kld_gamma_zero():
    s, t = logits_pair()
    for norm in (True, False):
        for T in (1.0, 4.0):
            assert close(hinton_kd(s, t, temperature=T, normalize=norm),
                         ca_kld(s, t, 0.0, temperature=T, normalize=norm))


def test_gradient_only_to_student_side():
    s, t = logits_pair()
    s.requires_grad_(True)
    t.requires_grad_(True)
    ca_kld(s, t, 0.5, temperature=3.0).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None                                    # the teacher side is a target


def test_teacher_confidence():
    z = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]], requires_grad=True)
    e = math.exp(2.0)
    c = teacher_confidence(z)
    assert close(c, [e / (e + 2), 1 / 3])
    assert not c.requires_grad


# --------------------------------------------------------------------------- objectives

def tiny_models(seed=0, c=4, d=6):
    torch.manual_seed(seed)
    student = nn.Sequential(nn.Linear(d, 8), nn.ReLU(), nn.Linear(8, c))
    teacher = nn.Sequential(nn.Linear(d, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, c))
    x = torch.randn(5, d)
    batch = Batch(x, torch.tensor([0, 1, 2, 3, 1]), torch.arange(5))
    return student, teacher, batch


def test_cross_entropy_objective():
    student, _, batch = tiny_models()
    loss, logits = CrossEntropy()(student, batch)
    assert torch.equal(logits, student(batch.x))
    assert close(loss, F.cross_entropy(logits, batch.y))
    loss_ls, _ = CrossEntropy(label_smoothing=0.1)(student, batch)
    assert close(loss_ls, F.cross_entropy(logits, batch.y, label_smoothing=0.1))


def test_distillation_teacher_frozen_after_student_step():
    student, teacher, batch = tiny_models()
    teacher.train()
    frozen = copy.deepcopy(teacher.state_dict())
    obj = Distillation(teacher, KDConfig(alpha=0.5), gamma=0.7)
    opt = torch.optim.SGD(student.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    before = [p.detach().clone() for p in student.parameters()]
    for _ in range(3):
        student.train()
        loss, logits = obj(student, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert logits.shape == (5, 4)
    assert not teacher.training
    for k, v in teacher.state_dict().items():               # weights and BN running stats
        assert torch.equal(v, frozen[k]), k
    for p in teacher.parameters():
        assert p.grad is None and not p.requires_grad
    assert any(not torch.equal(p, b) for p, b in zip(student.parameters(), before))


def test_distillation_keeps_teacher_in_eval_mode():
    student, teacher, batch = tiny_models()
    obj = Distillation(teacher, KDConfig(), gamma=0.5)
    teacher.train()                                         # e.g. a parent module's .train()
    loss_a, _ = obj(student, batch)
    loss_b, _ = obj(student, batch)
    assert not teacher.training
    assert torch.equal(loss_a, loss_b)                      # no dropout noise in the teacher


def test_distillation_alpha_endpoints_and_gradient():
    student, teacher, batch = tiny_models()
    kd0 = KDConfig(alpha=0.0)
    loss, logits = Distillation(teacher, kd0, gamma=0.6)(student, batch)
    assert close(loss, F.cross_entropy(logits, batch.y))

    kd1 = KDConfig(alpha=1.0, temperature=3.0)
    student.zero_grad()
    loss, logits = Distillation(teacher, kd1, gamma=0.6)(student, batch)
    teacher.eval()
    with torch.no_grad():
        t = teacher(batch.x)
    assert close(loss, ca_kld(logits, t, 0.6, temperature=3.0))
    loss.backward()
    assert all(p.grad is not None for p in student.parameters())
    assert sum(p.grad.abs().sum() for p in student.parameters()) > 0

    # alpha in between: the convex combination of the two terms
    kdh = KDConfig(alpha=0.3)
    loss, logits = Distillation(teacher, kdh, gamma=0.6)(student, batch)
    want = 0.3 * ca_kld(logits, t, 0.6, temperature=3.0) + 0.7 * F.cross_entropy(logits, batch.y)
    assert close(loss, want)


def test_distillation_per_sample_gamma_and_hinton_variant():
    student, teacher, batch = tiny_models()
    teacher.eval()
    with torch.no_grad():
        t = teacher(batch.x)
    kd = KDConfig(alpha=1.0, gamma="per-sample")
    loss, logits = Distillation(teacher, kd)(student, batch)            # no gamma needed
    assert close(loss, ca_kld(logits, t, teacher_confidence(t), temperature=3.0))

    kd = KDConfig(alpha=1.0, loss="kd", temperature=4.0, normalize=False)
    loss, logits = Distillation(teacher, kd)(student, batch)
    assert close(loss, hinton_kd(logits, t, temperature=4.0, normalize=False))


def test_distillation_teacher_mean_needs_gamma():
    _, teacher, _ = tiny_models()
    with pytest.raises(ValueError, match="teacher_mean_confidence"):
        Distillation(teacher, KDConfig(gamma="teacher-mean"), gamma=None)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Distillation(teacher, KDConfig(), gamma=1.5)


def test_distillation_under_cpu_bf16_autocast():
    student, teacher, batch = tiny_models()
    obj = Distillation(teacher, KDConfig(alpha=0.5), gamma=0.5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, logits = obj(student, batch)
    assert logits.dtype == torch.bfloat16                   # the model ran in bf16 ...
    assert loss.dtype == torch.float32 and torch.isfinite(loss)   # ... the loss in float32
    loss.backward()
    assert all(p.grad is not None for p in student.parameters())


def test_teacher_mean_confidence_matches_manual():
    _, teacher, _ = tiny_models()
    torch.manual_seed(1)
    batches = [Batch(torch.randn(n, 6), torch.zeros(n, dtype=torch.long), torch.arange(n))
               for n in (5, 3, 7)]
    teacher.train()                                         # it must measure in eval mode anyway
    got = teacher_mean_confidence(teacher, iter(batches), max_batches=2)
    assert isinstance(got, float)
    assert teacher.training                                 # mode restored
    teacher.eval()
    with torch.no_grad():
        conf = torch.cat([F.softmax(teacher(b.x), -1).max(-1).values for b in batches[:2]])
    assert math.isclose(got, conf.mean().item(), rel_tol=1e-6)
    # more batches requested than exist: uses them all
    with torch.no_grad():
        conf = torch.cat([F.softmax(teacher(b.x), -1).max(-1).values for b in batches])
    assert math.isclose(teacher_mean_confidence(teacher, batches, 100), conf.mean().item(), rel_tol=1e-6)
    with pytest.raises(ValueError):
        teacher_mean_confidence(teacher, [], 10)


def test_gamma_from_raw_logits_or_as_the_loss_uses_them_or_fixed():
    from bench.distill import KDConfig
    from bench.losses import gamma_confidence

    z = torch.tensor([[8.0, 1.0, 0.0, -1.0], [0.5, 0.4, 0.3, 0.2]])
    raw = gamma_confidence(KDConfig(), z)
    assert torch.allclose(raw, torch.softmax(z, -1).amax(-1))                    # the default: plain softmax
    used = gamma_confidence(KDConfig(gamma_logits="as-used", temperature=3.0), z)
    zs = normalize_logits(z)                                                     # z-scored, then / T
    assert torch.allclose(used, torch.softmax(zs / 3.0, -1).amax(-1), atol=1e-5)
    assert used[0] < raw[0]                                                      # a confident teacher, flattened
    teacher = nn.Linear(4, 4)
    with pytest.raises(ValueError, match="needs gamma"):
        Distillation(teacher, KDConfig(gamma="fixed"))
    assert Distillation(teacher, KDConfig(gamma="fixed", gamma_value=0.3), gamma=0.3).gamma == 0.3
