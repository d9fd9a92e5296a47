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
  (KDEFModelConfig.shared_embedding false), so the sub-networks share nothing at all.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import BeforeValidator, Field, SerializeAsAny
from torch import nn

from ctrdistill.data.schema import FeatureMap
from ctrdistill.models.base import Batch, CTRModel, ModelConfig, ModelOutput
from ctrdistill.models.layers.embedding import FeatureEmbedding
from ctrdistill.models.registry import build_model, model_config, register_model
from ctrdistill.strategies.base import SERVED, Strategy, bce

Mode = Literal["kdef", "naive", "independent"]
ModelSpec = Annotated[SerializeAsAny[ModelConfig], BeforeValidator(model_config)]


def default_backbone() -> ModelConfig:
    """Identical DNN (embedding + MLP) sub-networks, as in the paper."""
    return model_config({"name": "dnn"})


class KDEFModelConfig(ModelConfig):
    name: str = "kdef_ensemble"
    backbone: ModelSpec = Field(default_factory=default_backbone)
    num_subnetworks: int = Field(4, ge=1)
    shared_embedding: bool = Field(
        True, description="one embedding for all sub-networks (KDEF, naive); false: each "
        "sub-network owns one (independently trained sub-networks)")


@register_model("kdef_ensemble", zoo=False)
class KDEFModel(CTRModel):
    """N sub-networks of one zoo backbone, sharing a FeatureEmbedding unless configured
    otherwise; logit = mean of theirs."""

    config_class = KDEFModelConfig

    def __init__(self, feature_map: FeatureMap, config: KDEFModelConfig, sparse: bool = False,
                 embedding: FeatureEmbedding | None = None) -> None:
        if config.shared_embedding:
            shared = embedding or FeatureEmbedding(feature_map, config.backbone.embedding_dim,
                                                   sparse)
            subnetworks = [build_model(config.backbone, feature_map, sparse, embedding=shared)
                           for _ in range(config.num_subnetworks)]
        else:
            if embedding is not None:
                raise ValueError("sub-networks with their own embeddings take no shared one")
            subnetworks = [build_model(config.backbone, feature_map, sparse)
                           for _ in range(config.num_subnetworks)]
            shared = subnetworks[0].embedding  # pointing at sub-network 0's: no spare table
        super().__init__(feature_map, config, sparse, embedding=shared)
        self.subnetworks = nn.ModuleList(subnetworks)
        self.hidden_dim = sum(s.hidden_dim for s in self.subnetworks)

    @classmethod
    def build(cls, backbone: ModelConfig | dict, feature_map: FeatureMap, num_subnetworks: int,
              sparse: bool = False, shared_embedding: bool = True) -> KDEFModel:
        config = KDEFModelConfig(backbone=model_config(backbone), num_subnetworks=num_subnetworks,
                                 shared_embedding=shared_embedding)
        return cls(feature_map, config, sparse)

    def encode_all(self, batch: Batch) -> list[ModelOutput]:
        return [sub.encode(batch) for sub in self.subnetworks]

    def encode(self, batch: Batch) -> ModelOutput:
        outputs = self.encode_all(batch)
        return ModelOutput(torch.stack([o.logit for o in outputs]).mean(0),
                           torch.cat([o.hidden for o in outputs], dim=1))


def exam_scores(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """s_k = mean_B(1 - |y - p_k|) for probs of shape (N, B); detached: scores only weight."""
    return (1 - (labels - probs.detach()).abs()).mean(1)


def peer_weights(scores: torch.Tensor) -> torch.Tensor:
    """(N, N) matrix: row i holds softmax over j != i of s_j, zero on the diagonal."""
    n = scores.shape[0]
    masked = scores.expand(n, n).masked_fill(torch.eye(n, dtype=torch.bool), float("-inf"))
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
        labels = batch["label"]
        logits = torch.stack([sub(batch) for sub in self.model.subnetworks])
        if self.mode == "naive":
            loss = bce(logits.mean(0), labels)
            return {"loss": loss, "bce": loss.detach()}
        if self.mode == "independent":
            loss = torch.stack([bce(z, labels) for z in logits]).sum()
            return {"loss": loss, "bce": loss.detach()}
        return kdef_terms(logits, labels)

    def predict(self, batch: Batch) -> dict[str, torch.Tensor]:
        logits = [sub(batch) for sub in self.model.subnetworks]
        return {SERVED: torch.stack(logits).mean(0),
                **{f"sub{k}": z for k, z in enumerate(logits)}}

    def served_model(self) -> CTRModel:
        return self.model

    def servable_models(self) -> dict[str, CTRModel]:
        return {SERVED: self.model,
                **{f"sub{k}": sub for k, sub in enumerate(self.model.subnetworks)}}
