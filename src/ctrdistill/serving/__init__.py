"""Serving an exported bundle: loading it, scoring raw rows on onnxruntime, the HTTP app.

Imports no torch and none of the training code: a bundle needs onnxruntime, numpy and polars
(and FastAPI with uvicorn for the HTTP service, `pip install ctrdistill[serve]`).
"""

from ctrdistill.serving.bundle import Bundle, load_bundle

__all__ = ["Bundle", "load_bundle"]
