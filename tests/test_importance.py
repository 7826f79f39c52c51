"""EMAImportance: bias-corrected EMA of |w*g| or |g| against hand-computed values."""
import pytest
import torch
from torch import nn

from bench.importance import EMAImportance


def param(values):
    return nn.Parameter(torch.tensor(values, dtype=torch.float32))


@pytest.mark.parametrize("beta", [0.9, 0.99])
def test_constant_signal_is_exact_at_every_step(beta):
    w = param([[1.5, -2.0], [0.25, 3.0]])
    g = torch.tensor([[0.1, 0.4], [-2.0, -0.05]])
    imp = EMAImportance([w], beta=beta)
    want = (w * g).abs().detach()
    for _ in range(50):
        w.grad = g.clone()
        imp.update()
        assert torch.allclose(imp.scores()[0], want, rtol=1e-5, atol=0)   # bias correction at work


def test_two_step_sequence_hand_formula():
    beta = 0.9
    w = param([2.0, -1.0, 0.5])
    g1, g2 = torch.tensor([1.0, 3.0, -4.0]), torch.tensor([-0.5, 1.0, 2.0])
    s1 = [2.0, 3.0, 2.0]                       # |w*g1|
    s2 = [1.0, 1.0, 1.0]                       # |w*g2|
    imp = EMAImportance([w], beta=beta)
    w.grad = g1
    imp.update()
    assert torch.allclose(imp.scores()[0], torch.tensor(s1))             # m1/(1-b) = s1
    w.grad = g2
    imp.update()
    want = [(beta * (1 - beta) * a + (1 - beta) * b) / (1 - beta ** 2) for a, b in zip(s1, s2)]
    assert torch.allclose(imp.scores()[0], torch.tensor(want), rtol=1e-6)
    assert imp.t == 2


def test_grad_vs_weight_grad_saliency():
    w = param([2.0, -3.0])
    g = torch.tensor([-0.5, 0.25])
    for sal, want in (("weight-grad", [1.0, 0.75]), ("grad", [0.5, 0.25])):
        imp = EMAImportance([w], saliency=sal)
        w.grad = g.clone()
        imp.update()
        assert torch.allclose(imp.scores()[0], torch.tensor(want))
        assert torch.equal(w.grad, g)                                    # grad left untouched
    with pytest.raises(ValueError):
        EMAImportance([w], saliency="grad2")


def test_ema_false_keeps_last_step():
    w = param([1.0, -2.0])
    imp = EMAImportance([w], ema=False)
    for g in ([3.0, 1.0], [-1.0, 0.5], [0.5, -4.0]):
        w.grad = torch.tensor(g)
        imp.update()
    assert torch.allclose(imp.scores()[0], torch.tensor([0.5, 8.0]))


def test_scores_before_update_raises():
    with pytest.raises(RuntimeError, match="before any update"):
        EMAImportance([param([1.0])]).scores()


def test_params_without_grad_are_skipped():
    a, b = param([1.0, 2.0]), param([3.0])
    imp = EMAImportance([a, b], beta=0.9)
    a.grad = torch.tensor([1.0, 1.0])
    imp.update()                                   # b.grad is None: skipped
    b.grad = torch.tensor([2.0])
    imp.update()
    sa, sb = imp.scores()
    assert torch.allclose(sa, torch.tensor([1.0, 2.0]))                  # two equal steps
    assert torch.allclose(sb, torch.tensor([6.0]))                       # corrected for one step
    # a tensor that never had a gradient scores zero
    c = param([5.0])
    imp = EMAImportance([a, c])
    imp.update()
    assert torch.equal(imp.scores()[1], torch.zeros(1))


def test_scores_are_copies_and_float32():
    w = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.bfloat16))
    imp = EMAImportance([w])
    w.grad = torch.tensor([0.5, 0.5], dtype=torch.bfloat16)
    imp.update()
    s = imp.scores()[0]
    assert s.dtype == torch.float32
    s.zero_()
    assert torch.allclose(imp.scores()[0], torch.tensor([0.5, 1.0]))


def test_large_t_and_state_dict_round_trip():
    torch.manual_seed(0)
    ws = [nn.Parameter(torch.randn(3, 2)), nn.Parameter(torch.randn(4))]
    grads = [[torch.randn_like(w) for w in ws] for _ in range(6)]
    a = EMAImportance(ws, beta=0.5)
    for gs in grads[:3]:
        for w, g in zip(ws, gs):
            w.grad = g
        a.update()
    b = EMAImportance(ws, beta=0.5)
    b.load_state_dict(a.state_dict())
    for gs in grads[3:]:
        for w, g in zip(ws, gs):
            w.grad = g
        a.update()
        b.update()
    for sa, sb in zip(a.scores(), b.scores()):
        assert torch.equal(sa, sb)
    with pytest.raises(ValueError):
        EMAImportance(ws, beta=0.9).load_state_dict(a.state_dict())
    with pytest.raises(ValueError):
        EMAImportance(ws[:1], beta=0.5).load_state_dict(a.state_dict())
    # beta**t underflows to 0 for large t: scores become the raw EMA, still finite
    a.t, a.steps = 10**6, [10**6, 10**6]
    assert all(torch.isfinite(s).all() for s in a.scores())


def test_works_inside_a_training_loop():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    weights = [model[0].weight, model[2].weight]
    imp = EMAImportance(weights, beta=0.99)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(5):
        loss = model(torch.randn(8, 4)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        imp.update()
        opt.step()
    scores = imp.scores()
    assert [s.shape for s in scores] == [w.shape for w in weights]
    assert all((s >= 0).all() and s.sum() > 0 for s in scores)


def test_squared_saliency_sum_and_whole_fine_tune_ema():
    w = param([2.0, -3.0])
    g1, g2 = torch.tensor([-0.5, 0.25]), torch.tensor([1.0, 1.0])
    sq = EMAImportance([w], saliency="weight-grad-squared")
    total = EMAImportance([w], accumulate="sum")
    beta = 1 - 1 / 4                                     # ema-whole over a 4-step fine-tune (tgp.accumulation_beta)
    whole = EMAImportance([w], beta=beta, accumulate="ema-whole")
    for g in (g1, g2):
        w.grad = g.clone()
        for imp in (sq, total, whole):
            imp.update()
    s1, s2 = (w * g1).abs().detach(), (w * g2).abs().detach()
    want_sq = ((0.99 * 0.01) * s1 ** 2 + 0.01 * s2 ** 2) / (1 - 0.99 ** 2)
    assert torch.allclose(sq.scores()[0], want_sq, rtol=1e-6)                     # (w g)^2, then the EMA
    assert torch.allclose(total.scores()[0], s1 + s2)                             # plain sum, no correction
    want_whole = (beta * (1 - beta) * s1 + (1 - beta) * s2) / (1 - beta ** 2)
    assert torch.allclose(whole.scores()[0], want_whole, rtol=1e-6)
    with pytest.raises(ValueError):
        EMAImportance([w], accumulate="mean")
    state = total.state_dict()
    with pytest.raises(ValueError, match="accumulate"):                          # no mixing on resume
        EMAImportance([w]).load_state_dict(state)
