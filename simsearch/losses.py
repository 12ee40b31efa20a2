"""Metric-learning losses as pure tensor functions over a batch of L2-normalized embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from simsearch.config.choices import Loss, Mining

__all__ = ["Loss", "Mining", "contrastive_loss", "episodic_loss", "ntxent_loss", "triplet_loss"]


def _distances(emb: torch.Tensor) -> torch.Tensor:
    """(N, D) -> (N, N) Euclidean distances; stable at zero (no NaN gradient on the diagonal)."""
    sq = (emb.unsqueeze(1) - emb.unsqueeze(0)).pow(2).sum(-1)
    return torch.sqrt(sq.clamp_min(1e-12)) * (sq > 0)


def contrastive_loss(emb: torch.Tensor, labels: torch.Tensor, margin: float = 0.5) -> torch.Tensor:
    """Hadsell et al. contrastive loss over all pairs in the batch.

    emb: (N, D) float, labels: (N,) int. Same-label pairs pay d^2, different-label pairs pay
    max(0, margin - d)^2; the two kinds are averaged separately and added, so the class balance
    of the batch does not tilt the loss.
    """
    d = _distances(emb)
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    off_diag = ~torch.eye(len(labels), dtype=torch.bool, device=emb.device)
    pos, neg = same & off_diag, ~same
    loss = emb.new_zeros(())
    if pos.any():
        loss = loss + d[pos].pow(2).mean()
    if neg.any():
        loss = loss + F.relu(margin - d[neg]).pow(2).mean()
    return loss


def triplet_loss(
    emb: torch.Tensor, labels: torch.Tensor, margin: float = 0.2, mining: Mining | str = Mining.BATCH_HARD
) -> torch.Tensor:
    """Triplet loss max(0, d(a,p) - d(a,n) + margin) with the chosen mining.

    all: mean over every valid triplet with a positive loss; batch-hard: per anchor, the farthest
    positive and the nearest negative; semi-hard: per (anchor, positive), the nearest negative
    that is farther than the positive (falling back to the farthest negative when none is).
    """
    mining = Mining.parse(str(getattr(mining, "value", mining)))
    d = _distances(emb)
    n = len(labels)
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    eye = torch.eye(n, dtype=torch.bool, device=emb.device)
    pos, neg = same & ~eye, ~same
    if mining is Mining.BATCH_HARD:
        valid = pos.any(1) & neg.any(1)
        hardest_pos = torch.where(pos, d, torch.zeros_like(d)).max(1).values
        hardest_neg = torch.where(neg, d, torch.full_like(d, float("inf"))).min(1).values
        losses = F.relu(hardest_pos - hardest_neg + margin)[valid]
        return losses.mean() if len(losses) else emb.new_zeros(())
    # (a, p, n) cube of margins
    cube = d.unsqueeze(2) - d.unsqueeze(1) + margin
    valid = pos.unsqueeze(2) & neg.unsqueeze(1)
    if mining is Mining.ALL:
        losses = F.relu(cube[valid])
        active = losses[losses > 0]
        return active.mean() if len(active) else emb.new_zeros(())
    # semi-hard: negatives with d(a,p) < d(a,n) < d(a,p) + margin preferred, nearest first
    d_an = d.unsqueeze(1).expand(n, n, n)
    d_ap = d.unsqueeze(2).expand(n, n, n)
    semi = valid & (d_an > d_ap)
    inf = torch.full_like(d_an, float("inf"))
    nearest_semi = torch.where(semi, d_an, inf).min(2).values
    farthest_neg = torch.where(valid, d_an, -inf).max(2).values
    chosen = torch.where(torch.isinf(nearest_semi), farthest_neg, nearest_semi)
    pairs = pos & neg.any(1, keepdim=True)
    losses = F.relu(d - chosen + margin)[pairs]
    return losses.mean() if len(losses) else emb.new_zeros(())


def episodic_loss(
    emb: torch.Tensor, labels: torch.Tensor, shot: int = 1, scale: torch.Tensor | float = 10.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """N-way prototypical loss over a class-balanced batch.

    For each class in the batch its first `shot` rows (in batch order) are the support set, whose
    mean is the prototype; every other row is a query, classified by softmax over
    scale * cosine(query, prototype). Returns (cross-entropy loss, query accuracy).
    """
    classes, inverse = torch.unique(labels, return_inverse=True)
    n_way = len(classes)
    order = torch.argsort(inverse, stable=True)
    counts = torch.bincount(inverse, minlength=n_way)
    if int(counts.min()) <= shot:
        raise ValueError(f"every class needs more than shot={shot} examples in the batch")
    # rank of each row within its class, in batch order
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(inverse)
    rank[order] = torch.arange(len(labels), device=emb.device) - starts[inverse[order]]
    support = rank < shot
    protos = torch.zeros(n_way, emb.shape[1], device=emb.device, dtype=emb.dtype)
    protos.index_add_(0, inverse[support], emb[support])
    protos = F.normalize(protos, dim=1)
    q_emb, q_lab = emb[~support], inverse[~support]
    logits = scale * q_emb @ protos.T
    loss = F.cross_entropy(logits, q_lab)
    acc = (logits.argmax(1) == q_lab).float().mean()
    return loss, acc


def ntxent_loss(emb: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """NT-Xent (SimCLR's InfoNCE) over 2B L2-normalized embeddings: rows i and i + B are two
    views of one image. Each row must pick its partner out of the other 2B - 2 rows by softmax
    over cosine / temperature; the loss is the mean cross-entropy over all 2B rows."""
    n = emb.shape[0]
    if n % 2 or n < 4:
        raise ValueError("NT-Xent needs an even number of rows (two views of each image), at least 4")
    b = n // 2
    logits = (emb @ emb.T) / temperature
    logits = logits.masked_fill(torch.eye(n, dtype=torch.bool, device=emb.device), float("-inf"))
    partner = torch.cat([torch.arange(b, n), torch.arange(0, b)]).to(emb.device)
    return F.cross_entropy(logits, partner)
