"""Mutual learning between equal peers (METHODS.md section 3, Yilmaz & Aldemir 2024).

Each peer n minimises BCE(y, p_n) + weight/(N-1) * sum_{i != n} D(sg(peer_i), peer_n). Because
the other peers are detached, summing the peers' losses into one "loss" gives every peer exactly
its own gradient. The mean of the peer logits is served; every peer is saved as well.
"""

from __future__ import annotations

import torch
from torch import nn

from ctrdistill.data.schema import FeatureMap
from ctrdistill.models.base import Batch, CTRModel
from ctrdistill.models.ensembles import PeerEnsemble
from ctrdistill.strategies.base import SERVED, Strategy, bce
from ctrdistill.strategies.losses import Distance, distill_distance


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

    def start_step(self, step: int, epoch: int) -> None:
        self.mutual_on = step >= self.warmup_steps

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        logits = [peer(batch) for peer in self.peers]
        labels = batch.label
        n = len(logits)
        terms: dict[str, torch.Tensor] = {}
        total = logits[0].new_zeros(())
        for k, z in enumerate(logits):
            supervised = bce(z, labels)
            mutual = z.new_zeros(())
            if self.mutual_on:
                mutual = sum((distill_distance(other, z, self.distance)
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
