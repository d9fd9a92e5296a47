"""Building blocks shared by the zoo. Field embeddings are laid out as (batch, fields, dim)."""

from ctrdistill.models.layers.afm import AttentionalPooling
from ctrdistill.models.layers.attention import MultiHeadSelfAttention
from ctrdistill.models.layers.bilinear import BilinearInteraction
from ctrdistill.models.layers.cin import CIN
from ctrdistill.models.layers.cross_net import CrossNet
from ctrdistill.models.layers.cross_net_v2 import CrossNetMix, CrossNetV2
from ctrdistill.models.layers.dot_interaction import DotInteraction
from ctrdistill.models.layers.embedding import FeatureEmbedding
from ctrdistill.models.layers.finalmlp import FeatureGating, InteractionAggregation
from ctrdistill.models.layers.fm import FMInteraction
from ctrdistill.models.layers.linear import FeatureLinear
from ctrdistill.models.layers.mlp import MLP
from ctrdistill.models.layers.pairs import FieldPairs
from ctrdistill.models.layers.product import InnerProductInteraction, OuterProductInteraction
from ctrdistill.models.layers.senet import SENETLayer

__all__ = [
    "CIN",
    "MLP",
    "AttentionalPooling",
    "BilinearInteraction",
    "CrossNet",
    "CrossNetMix",
    "CrossNetV2",
    "DotInteraction",
    "FMInteraction",
    "FeatureEmbedding",
    "FeatureGating",
    "FeatureLinear",
    "FieldPairs",
    "InnerProductInteraction",
    "InteractionAggregation",
    "MultiHeadSelfAttention",
    "OuterProductInteraction",
    "SENETLayer",
]
