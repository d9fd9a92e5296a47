"""The zoo: importing it registers every model."""

from ctrdistill.models.zoo import dnn, lr

__all__ = ["dnn", "lr"]
