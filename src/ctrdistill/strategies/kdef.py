"""KDEF: an ensemble of sub-networks on one shared embedding (METHODS.md section 4, Li et al.).

The teacher is the mean of the sub-network logits, z_T = mean_k z_k, and is what is served.
Modes:
- "kdef": sum_k BCE(y, p_k) + sum_k softmin(s)_k * mean_B (p_k - sg(p_T))^2
          + mean_i sum_{j != i} softmax_{j != i}(s)_j * mean_B (p_i - sg(p_j))^2,
  with exam scores s_k = mean_B(1 - |y - p_k|); every coefficient is 1. The peer weights of
  sub-network i are a softmax over its N-1 peers only (METHODS.md's softmax_j(s_j) read with
  j != i): they sum to 1 like the softmin teacher weights, so each sub-network's peer term is a
  weighted average of its peers' distances on the same scale as its teacher term, for every N.
- "naive": BCE of the ensemble logit only (the setting that collapses as N grows).
- "independent": sum_k BCE(y, p_k), no knowledge transfer; each sub-network owns its embedding
  (KDEFModel's config: shared_embedding false), so the sub-networks share nothing at all.
"""

from __future__ import annotations

from typing import Literal

import torch

from ctrdistill.models.base import Batch, CTRModel
from ctrdistill.models.ensembles import KDEFModel
from ctrdistill.strategies.base import SERVED, Strategy, bce

Mode = Literal["kdef", "naive", "independent"]


def exam_scores(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """s_k = mean_B(1 - |y - p_k|) for probs of shape (N, B); detached: scores only weight."""
    return (1 - (labels - probs.detach()).abs()).mean(1)


def peer_weights(scores: torch.Tensor) -> torch.Tensor:
    """(N, N) matrix: row i holds softmax over j != i of s_j, zero on the diagonal."""
    n = scores.shape[0]
    masked = scores.expand(n, n).masked_fill(
        torch.eye(n, dtype=torch.bool, device=scores.device), float("-inf"))
    return torch.softmax(masked, dim=1).nan_to_num(0.0)  # N=1: the lone row is all -inf


def kdef_terms(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """The KDEF loss terms for sub-network logits of shape (N, B)."""
    probs = torch.sigmoid(logits)
    p_teacher = torch.sigmoid(logits.mean(0)).detach()
    scores = exam_scores(probs, labels)
    supervised = torch.stack([bce(z, labels) for z in logits]).sum()
    teach_weights = torch.softmax(-scores, 0)  # softmin: weaker students get more teaching
    teach = (teach_weights * (probs - p_teacher).pow(2).mean(1)).sum()
    # pair[i, j] = mean_B (p_i - sg(p_j))^2
    pair = (probs.unsqueeze(1) - probs.detach().unsqueeze(0)).pow(2).mean(2)
    peer = (peer_weights(scores) * pair).sum(1).mean()
    return {"loss": supervised + teach + peer, "bce": supervised.detach(),
            "teach": teach.detach(), "peer": peer.detach()}


class KDEFStrategy(Strategy):
    name = "kdef"

    def __init__(self, model: KDEFModel, mode: Mode = "kdef") -> None:
        super().__init__()
        if mode == "independent" and model.config.shared_embedding:
            raise ValueError("independent sub-networks need their own embeddings: build the "
                             "model with shared_embedding=False")
        self.model = model
        self.mode: Mode = mode

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        labels = batch.label
        logits = self.model.member_logits(batch)
        if self.mode == "naive":
            loss = bce(logits.mean(0), labels)
            return {"loss": loss, "bce": loss.detach()}
        if self.mode == "independent":
            loss = torch.stack([bce(z, labels) for z in logits]).sum()
            return {"loss": loss, "bce": loss.detach()}
        return kdef_terms(logits, labels)

    def predict(self, batch: Batch) -> dict[str, torch.Tensor]:
        logits = self.model.member_logits(batch)
        return {SERVED: logits.mean(0), **{f"sub{k}": z for k, z in enumerate(logits)}}

    def served_model(self) -> CTRModel:
        return self.model

    def servable_models(self) -> dict[str, CTRModel]:
        return {SERVED: self.model,
                **{f"sub{k}": sub for k, sub in enumerate(self.model.subnetworks)}}
