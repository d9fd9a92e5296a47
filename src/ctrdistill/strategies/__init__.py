"""Strategies: objectives plugged into the one trainer (plain, KD, ensembles, DML, KDEF)."""

from ctrdistill.strategies.base import Strategy
from ctrdistill.strategies.plain import PlainStrategy

__all__ = ["PlainStrategy", "Strategy"]
