"""Mutual learning between equal peers (METHODS.md section 3, Yilmaz & Aldemir 2024).

Each peer n minimises BCE(y, p_n) + weight/(N-1) * sum_{i != n} D(sg(peer_i), peer_n). Because
the other peers are detached, summing the peers' losses into one "loss" gives every peer exactly
its own gradient. The mean of the peer logits is served; every peer is saved as well.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BeforeValidator, Field, SerializeAsAny
from torch import nn

from ctrdistill.data.schema import FeatureMap
from ctrdistill.models.base import Batch, CTRModel, ModelConfig, ModelOutput
from ctrdistill.models.registry import build_model, model_config, register_model
from ctrdistill.strategies.base import SERVED, Strategy, bce

Distance = Literal["mse_probs", "kl", "mse_logits"]
ModelSpec = Annotated[SerializeAsAny[ModelConfig], BeforeValidator(model_config)]


def distance(target: torch.Tensor, logits: torch.Tensor, kind: Distance) -> torch.Tensor:
    """D(target, peer) on logits, averaged over the batch; `target` is expected detached."""
    if kind == "mse_logits":
        return (target - logits).pow(2).mean()
    p_target = torch.sigmoid(target)
    if kind == "mse_probs":
        return (p_target - torch.sigmoid(logits)).pow(2).mean()
    # KL(Bernoulli(p_target) || Bernoulli(p)) = cross-entropy minus the target's entropy.
    return (F.binary_cross_entropy_with_logits(logits, p_target, reduction="none")
            - F.binary_cross_entropy_with_logits(target, p_target, reduction="none")).mean()


class PeerEnsembleConfig(ModelConfig):
    name: str = "peer_ensemble"
    peers: list[ModelSpec] = Field(min_length=1)


@register_model("peer_ensemble", zoo=False)
class PeerEnsemble(CTRModel):
    """Peers with their own embeddings, served as the mean of their logits (one checkpoint)."""

    config_class = PeerEnsembleConfig

    def __init__(self, feature_map: FeatureMap, config: PeerEnsembleConfig, sparse: bool = False,
                 embedding=None, peers: list[CTRModel] | None = None) -> None:
        members = peers if peers is not None else [build_model(c, feature_map, sparse)
                                                   for c in config.peers]
        # Each peer owns its embedding; pointing at peer 0's avoids allocating a spare table.
        super().__init__(feature_map, config, sparse, embedding=members[0].embedding)
        self.peers = nn.ModuleList(members)
        self.hidden_dim = sum(p.hidden_dim for p in self.peers)

    @classmethod
    def of(cls, feature_map: FeatureMap, peers: list[CTRModel]) -> PeerEnsemble:
        config = PeerEnsembleConfig(peers=[p.config for p in peers],
                                    embedding_dim=peers[0].config.embedding_dim)
        return cls(feature_map, config, peers=peers)

    def encode_all(self, batch: Batch) -> list[ModelOutput]:
        return [peer.encode(batch) for peer in self.peers]

    def encode(self, batch: Batch) -> ModelOutput:
        outputs = self.encode_all(batch)
        return ModelOutput(torch.stack([o.logit for o in outputs]).mean(0),
                           torch.cat([o.hidden for o in outputs], dim=1))


def load_peers(run_dirs: list[Path], feature_map: FeatureMap) -> list[CTRModel]:
    """Served models of finished runs, trainable again (refuses a different feature map)."""
    from ctrdistill.training.checkpoint import load_checkpoint

    return [load_checkpoint(Path(d), feature_map)[0].train() for d in run_dirs]


class MutualStrategy(Strategy):
    name = "mutual"

    def __init__(self, peers: list[CTRModel], distance: Distance = "mse_probs",
                 weight: float = 1.0, warmup_steps: int = 0,
                 feature_map: FeatureMap | None = None) -> None:
        super().__init__()
        if len(peers) < 2:
            raise ValueError("mutual learning needs at least two peers")
        self.distance: Distance = distance
        self.weight = weight
        self.warmup_steps = warmup_steps
        self.mutual_on = warmup_steps == 0
        if feature_map is not None:
            self.ensemble = PeerEnsemble.of(feature_map, peers)
            self.peers = self.ensemble.peers
        else:  # loss-only use (tests): no servable ensemble
            self.ensemble = None
            self.peers = nn.ModuleList(peers)

    @classmethod
    def from_runs(cls, run_dirs: list[Path], feature_map: FeatureMap,
                  **kwargs: Any) -> MutualStrategy:
        """Fine-tune pretrained peers (the setting where mutual learning helps)."""
        return cls(load_peers(run_dirs, feature_map), feature_map=feature_map, **kwargs)

    def start_step(self, step: int, epoch: int) -> None:
        self.mutual_on = step >= self.warmup_steps

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        logits = [peer(batch) for peer in self.peers]
        labels = batch["label"]
        n = len(logits)
        terms: dict[str, torch.Tensor] = {}
        total = logits[0].new_zeros(())
        for k, z in enumerate(logits):
            supervised = bce(z, labels)
            mutual = z.new_zeros(())
            if self.mutual_on:
                mutual = sum((distance(other.detach(), z, self.distance)
                              for i, other in enumerate(logits) if i != k), mutual) / (n - 1)
            total = total + supervised + self.weight * mutual
            terms[f"peer{k}.bce"] = supervised.detach()
            terms[f"peer{k}.mutual"] = mutual.detach()
        terms["bce"] = torch.stack([terms[f"peer{k}.bce"] for k in range(n)]).mean()
        terms["mutual"] = torch.stack([terms[f"peer{k}.mutual"] for k in range(n)]).mean()
        return {"loss": total, **terms}

    def predict(self, batch: Batch) -> dict[str, torch.Tensor]:
        logits = {f"peer{k}": peer(batch) for k, peer in enumerate(self.peers)}
        return {SERVED: torch.stack(list(logits.values())).mean(0), **logits}

    def served_model(self) -> CTRModel:
        if self.ensemble is None:
            raise RuntimeError("built without a feature map: no servable ensemble")
        return self.ensemble

    def servable_models(self) -> dict[str, CTRModel]:
        return {SERVED: self.served_model(),
                **{f"peer{k}": peer for k, peer in enumerate(self.peers)}}
