"""The zoo: importing it registers every model."""

from ctrdistill.models.zoo import (
    afm,
    autoint,
    dcn,
    dcnv2,
    deepfm,
    dlrm,
    dnn,
    fibinet,
    finalmlp,
    fm,
    lr,
    nfm,
    pnn,
    widedeep,
    xdeepfm,
)

__all__ = ["afm", "autoint", "dcn", "dcnv2", "deepfm", "dlrm", "dnn", "fibinet", "finalmlp",
           "fm", "lr", "nfm", "pnn", "widedeep", "xdeepfm"]
