import math

import pytest
import torch

from simsearch.losses import Loss, contrastive_loss, episodic_loss, ntxent_loss, triplet_loss

# Three 2-d unit embeddings: a and c coincide, b is orthogonal to both.
A, B, C = [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]


def test_contrastive_by_hand():
    emb = torch.tensor([A, B, C])
    labels = torch.tensor([0, 0, 1])
    # positive pair (a, b): d^2 = 2. negatives: (a, c) d = 0 -> (0.5 - 0)^2 = 0.25; (b, c) d = sqrt2 -> 0
    # means over ordered pairs: pos 2, neg (0.25 + 0.25 + 0 + 0) / 4
    assert contrastive_loss(emb, labels, margin=0.5).item() == pytest.approx(2 + 0.125, abs=1e-5)


def test_triplet_batch_hard_by_hand():
    emb = torch.tensor([A, B, C, [0.6, 0.8]])
    labels = torch.tensor([0, 0, 1, 1])
    d = torch.cdist(emb, emb)
    # anchor a: hardest pos b (sqrt2), nearest neg c (0) -> sqrt2 + 0.2
    # anchor b: pos a sqrt2, nearest neg min(d(b,c)=sqrt2, d(b,d)) ; anchor c: pos d, nearest neg a (0)
    # anchor d: pos c, nearest neg min(d(d,a), d(d,b))
    expect = [
        math.sqrt(2) + 0.2,
        max(0.0, math.sqrt(2) - min(d[1, 2].item(), d[1, 3].item()) + 0.2),
        max(0.0, d[2, 3].item() - 0.0 + 0.2),
        max(0.0, d[3, 2].item() - min(d[3, 0].item(), d[3, 1].item()) + 0.2),
    ]
    got = triplet_loss(emb, labels, margin=0.2, mining="batch-hard").item()
    assert got == pytest.approx(sum(expect) / 4, abs=1e-5)


def test_triplet_semi_hard_and_all_by_hand():
    # 1-d: anchor 0 at 0.0, its positive at 0.3; negatives at 0.4 (semi-hard) and 1.0 (easy)
    emb = torch.tensor([[0.0], [0.3], [0.4], [1.0]])
    labels = torch.tensor([0, 0, 1, 1])
    # semi-hard for (anchor 0, pos 1): nearest negative farther than 0.3 is 0.4 -> 0.3 - 0.4 + 0.5 = 0.4
    # (anchor 1, pos 0): d(ap)=0.3; negatives at 0.1 and 0.7 -> semi-hard 0.7 -> 0.3 - 0.7 + 0.5 = 0.1
    # (anchor 2, pos 3): d=0.6; negs at 0.4, 0.1 -> none farther -> farthest 0.4 -> 0.6 - 0.4 + 0.5 = 0.7
    # (anchor 3, pos 2): d=0.6; negs at 1.0, 0.7 -> semi-hard 0.7 -> 0.6 - 0.7 + 0.5 = 0.4
    got = triplet_loss(emb, labels, margin=0.5, mining="semi-hard").item()
    assert got == pytest.approx((0.4 + 0.1 + 0.7 + 0.4) / 4, abs=1e-5)
    # all: every (a, p, n) with positive loss, averaged over those
    d = torch.cdist(emb, emb)
    vals = []
    for a in range(4):
        for p in range(4):
            for n in range(4):
                if a != p and labels[a] == labels[p] and labels[a] != labels[n]:
                    v = d[a, p] - d[a, n] + 0.5
                    if v > 0:
                        vals.append(v.item())
    assert triplet_loss(emb, labels, margin=0.5, mining="all").item() == pytest.approx(sum(vals) / len(vals), abs=1e-5)


def test_episodic_by_hand():
    # class 0: support A, query [0.6, 0.8]; class 1: support B, query B
    emb = torch.tensor([A, [0.6, 0.8], B, B])
    labels = torch.tensor([0, 0, 1, 1])
    loss, acc = episodic_loss(emb, labels, shot=1, scale=2.0)
    # query 1: cos to protos A, B = 0.6, 0.8 -> logits 1.2, 1.6, true 0
    # query 2: cos = 0, 1 -> logits 0, 2, true 1
    l1 = -1.2 + math.log(math.exp(1.2) + math.exp(1.6))
    l2 = -2.0 + math.log(1 + math.exp(2.0))
    assert loss.item() == pytest.approx((l1 + l2) / 2, abs=1e-5)
    assert acc.item() == pytest.approx(0.5)


def test_episodic_needs_queries_and_losses_are_named():
    with pytest.raises(ValueError, match="more than shot"):
        episodic_loss(torch.tensor([A, B]), torch.tensor([0, 1]), shot=1)
    with pytest.raises(ValueError, match="allowed: contrastive, triplet, episodic"):
        Loss.parse("arcface")


def test_losses_have_gradients():
    emb = torch.nn.functional.normalize(torch.randn(12, 4), dim=1).requires_grad_()
    labels = torch.arange(3).repeat_interleave(4)
    for loss in (contrastive_loss(emb, labels), triplet_loss(emb, labels), episodic_loss(emb, labels, shot=1)[0]):
        (g,) = torch.autograd.grad(loss, emb)
        assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_ntxent_by_hand() -> None:
    # four unit rows: views (0, 2) of image A, views (1, 3) of image B
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.0, 1.0]])
    t = 0.5
    sims = (emb @ emb.T).tolist()
    expected = 0.0
    for i, partner in enumerate([2, 3, 0, 1]):
        others = [j for j in range(4) if j != i]
        expected += -(sims[i][partner] / t) + math.log(sum(math.exp(sims[i][j] / t) for j in others))
    assert ntxent_loss(emb, t).item() == pytest.approx(expected / 4, rel=1e-5)
    with pytest.raises(ValueError, match="even number"):
        ntxent_loss(emb[:3], t)
