"""The distillation losses against plain formulas: exact values, chunking, gradients, temperature."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ft_kd.losses import divergence, full_kd_loss, topk_kd_loss, trained_positions

torch.manual_seed(0)
B, T, V = 2, 7, 11
LABELS = torch.tensor([[-100, 3, 4, -100, 5, 6, 7], [-100, -100, 1, 2, 3, -100, -100]])


def logits(scale: float = 2.0) -> torch.Tensor:
    return torch.randn(B, T, V, dtype=torch.float64) * scale


def naive_forward_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    rows, cols = trained_positions(LABELS)
    s = F.log_softmax(student[rows, cols] / temperature, -1)
    t = F.log_softmax(teacher[rows, cols] / temperature, -1)
    return F.kl_div(s, t, log_target=True, reduction="sum") * temperature**2 / rows.numel()


def everything(teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's 'top-k' with k = V: every token, its log-probability at T = 1."""
    logp = F.log_softmax(teacher.float(), -1)
    values, ids = logp.topk(V, dim=-1)
    return ids, values


def test_topk_forward_kl_with_k_equal_to_the_vocabulary_is_kl_div_on_full_distributions():
    student, teacher = logits(), logits()
    ids, values = everything(teacher)
    got = topk_kd_loss(student.float(), ids, values, LABELS, None)
    assert got.item() == pytest.approx(naive_forward_kl(student, teacher).item(), abs=1e-6)


def test_offline_top_k_and_online_teacher_give_the_same_loss_when_k_is_the_vocabulary():
    student, teacher = logits().float(), logits().float()
    ids, values = everything(teacher)
    online = full_kd_loss(student, lambda r, c: teacher[r, c], LABELS, 9)
    offline = topk_kd_loss(student, ids, values, LABELS, 9)
    assert offline.item() == pytest.approx(online.item(), abs=1e-6)


@pytest.mark.parametrize("kind", ["forward_kl", "reverse_kl", "jsd"])
def test_chunked_equals_unchunked(kind):
    student, teacher = logits().float(), logits().float()
    one = full_kd_loss(student, lambda r, c: teacher[r, c], LABELS, None, kind=kind, chunk_size=10_000)
    many = full_kd_loss(student, lambda r, c: teacher[r, c], LABELS, None, kind=kind, chunk_size=2)
    assert many.item() == pytest.approx(one.item(), abs=1e-6)
    ids, values = everything(teacher)
    assert topk_kd_loss(student, ids, values, LABELS, None, kind=kind, chunk_size=1).item() == pytest.approx(
        topk_kd_loss(student, ids, values, LABELS, None, kind=kind, chunk_size=100).item(), abs=1e-6)


def test_gradient_matches_autograd_on_the_naive_formula():
    student, teacher = logits(), logits()
    mine = student.clone().requires_grad_(True)
    full_kd_loss(mine, lambda r, c: teacher[r, c], LABELS, None, chunk_size=3).backward()
    reference = student.clone().requires_grad_(True)
    naive_forward_kl(reference, teacher).backward()
    assert torch.allclose(mine.grad, reference.grad, atol=1e-6)


def test_temperature_softens_both_sides_and_scales_by_t_squared():
    student, teacher = logits(), logits()
    for temperature in (0.5, 2.0, 4.0):
        got = full_kd_loss(student, lambda r, c: teacher[r, c], LABELS, None, temperature=temperature)
        assert got.item() == pytest.approx(naive_forward_kl(student, teacher, temperature).item(), rel=1e-6)
    plain = full_kd_loss(student, lambda r, c: teacher[r, c], LABELS, None, temperature=2.0) / 4.0
    rows, cols = trained_positions(LABELS)
    expected = F.kl_div(F.log_softmax(student[rows, cols] / 2, -1), F.log_softmax(teacher[rows, cols] / 2, -1),
                        log_target=True, reduction="sum") / rows.numel()
    assert plain.item() == pytest.approx(expected.item(), rel=1e-6)  # without T^2: the softened KL itself


def test_reverse_kl_and_jsd_limits():
    s, t = F.log_softmax(torch.randn(5, V, dtype=torch.float64), -1), F.log_softmax(torch.randn(5, V, dtype=torch.float64), -1)
    assert torch.allclose(divergence(s, t, "reverse_kl"), divergence(t, s, "forward_kl"))
    assert torch.allclose(divergence(s, t, "jsd", beta=1.0), divergence(s, t, "forward_kl"))
    assert torch.allclose(divergence(s, t, "jsd", beta=0.0), divergence(s, t, "reverse_kl"))
    middle = divergence(s, t, "jsd", beta=0.5)
    assert bool((middle >= 0).all()) and bool((middle <= torch.log(torch.tensor(2.0))).all())  # JSD is bounded by ln 2


def test_masked_positions_contribute_nothing_and_num_items_normalises():
    student, teacher = logits().float(), logits().float()
    base = full_kd_loss(student, lambda r, c: teacher[r, c], LABELS, 10)
    changed = student.clone()
    changed[0, 2] += 50.0  # position 2 predicts labels[0, 3] = -100: not trained
    changed[1, 5:] -= 30.0  # padding-like tail
    assert full_kd_loss(changed, lambda r, c: teacher[r, c], LABELS, 10).item() == pytest.approx(base.item(), abs=1e-7)
    assert full_kd_loss(student, lambda r, c: teacher[r, c], LABELS, 20).item() == pytest.approx(base.item() / 2, rel=1e-6)


def test_top_k_renormalisation_makes_the_support_a_distribution():
    student, teacher = logits().float(), logits().float()
    ids, values = everything(teacher)
    top_ids, top_values = ids[..., :4], values[..., :4]
    renormalised = topk_kd_loss(student, top_ids, top_values, LABELS, None, renormalize=True)
    raw = topk_kd_loss(student, top_ids, top_values, LABELS, None, renormalize=False)
    assert renormalised.item() != pytest.approx(raw.item())
    teacher_probs = F.softmax(teacher, -1)
    assert float(teacher_probs.topk(4, -1).values.sum(-1).max()) < 1.0  # the raw top-4 is not a distribution
