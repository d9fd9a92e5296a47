"""Building blocks shared by the zoo. Field embeddings are laid out as (batch, fields, dim)."""

from ctrdistill.models.layers.embedding import FeatureEmbedding
from ctrdistill.models.layers.mlp import MLP

__all__ = ["MLP", "FeatureEmbedding"]
