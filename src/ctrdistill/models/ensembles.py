"""Ensembles of zoo models, served as the mean of their members' logits.

`PeerEnsemble` holds mutual-learning peers of any architectures, each with its own embedding;
`KDEFModel` holds N sub-networks of one backbone over one shared embedding (or each its own).
Both are models like any other: saved in one checkpoint, rebuilt from their config, exported.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field
from torch import nn

from ctrdistill.data.schema import FeatureMap
from ctrdistill.models.base import Batch, CTRModel, ModelConfig, ModelOutput
from ctrdistill.models.layers.embedding import FeatureEmbedding
from ctrdistill.models.registry import ModelSpec, build_model, model_config, register_model


def default_backbone() -> ModelConfig:
    """Identical DNN (embedding + MLP) sub-networks, as in the KDEF paper."""
    return model_config({"name": "dnn"})


class MeanEnsemble(CTRModel):
    """Members held under `members_attribute` (the checkpoint's key prefix); logit = mean of
    theirs, hidden = their concatenation."""

    members_attribute: ClassVar[str]

    def _set_members(self, members: list[CTRModel]) -> None:
        setattr(self, self.members_attribute, nn.ModuleList(members))
        self.hidden_dim = sum(m.hidden_dim for m in members)

    @property
    def members(self) -> nn.ModuleList:
        return getattr(self, self.members_attribute)

    def encode_all(self, batch: Batch) -> list[ModelOutput]:
        return [member.encode(batch) for member in self.members]

    def member_logits(self, batch: Batch) -> torch.Tensor:
        """(N, B) logits of every member."""
        return torch.stack([member(batch) for member in self.members])

    def encode(self, batch: Batch) -> ModelOutput:
        outputs = self.encode_all(batch)
        return ModelOutput(torch.stack([o.logit for o in outputs]).mean(0),
                           torch.cat([o.hidden for o in outputs], dim=1))


class PeerEnsembleConfig(ModelConfig):
    name: str = "peer_ensemble"
    peers: list[ModelSpec] = Field(min_length=1)


@register_model("peer_ensemble", zoo=False)
class PeerEnsemble(MeanEnsemble):
    """Peers with their own embeddings (mutual learning)."""

    config_class = PeerEnsembleConfig
    members_attribute = "peers"

    def __init__(self, feature_map: FeatureMap, config: PeerEnsembleConfig, embedding=None,
                 peers: list[CTRModel] | None = None) -> None:
        members = peers if peers is not None else [build_model(c, feature_map)
                                                   for c in config.peers]
        # Each peer owns its embedding; pointing at peer 0's avoids allocating a spare table.
        super().__init__(feature_map, config, embedding=members[0].embedding)
        self._set_members(members)

    @classmethod
    def of(cls, feature_map: FeatureMap, peers: list[CTRModel]) -> PeerEnsemble:
        config = PeerEnsembleConfig(peers=[p.config for p in peers],
                                    embedding_dim=peers[0].config.embedding_dim)
        return cls(feature_map, config, peers=peers)


class KDEFModelConfig(ModelConfig):
    name: str = "kdef_ensemble"
    backbone: ModelSpec = Field(default_factory=default_backbone)
    num_subnetworks: int = Field(4, ge=1)
    shared_embedding: bool = Field(
        True, description="one embedding for all sub-networks (KDEF, naive); false: each "
        "sub-network owns one (independently trained sub-networks)")


@register_model("kdef_ensemble", zoo=False)
class KDEFModel(MeanEnsemble):
    """N sub-networks of one zoo backbone, sharing a FeatureEmbedding unless configured
    otherwise."""

    config_class = KDEFModelConfig
    members_attribute = "subnetworks"

    def __init__(self, feature_map: FeatureMap, config: KDEFModelConfig,
                 embedding: FeatureEmbedding | None = None) -> None:
        if config.shared_embedding:
            shared = embedding or FeatureEmbedding(feature_map, config.backbone.embedding_dim)
            subnetworks = [build_model(config.backbone, feature_map, embedding=shared)
                           for _ in range(config.num_subnetworks)]
        else:
            if embedding is not None:
                raise ValueError("sub-networks with their own embeddings take no shared one")
            subnetworks = [build_model(config.backbone, feature_map)
                           for _ in range(config.num_subnetworks)]
            shared = subnetworks[0].embedding  # pointing at sub-network 0's: no spare table
        super().__init__(feature_map, config, embedding=shared)
        self._set_members(subnetworks)

    @classmethod
    def build(cls, backbone: ModelConfig | dict, feature_map: FeatureMap, num_subnetworks: int,
              shared_embedding: bool = True) -> KDEFModel:
        config = KDEFModelConfig(backbone=model_config(backbone), num_subnetworks=num_subnetworks,
                                 shared_embedding=shared_embedding)
        return cls(feature_map, config)
