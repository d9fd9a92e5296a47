"""Models registered by name; configs validated against the chosen model's own config class."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, SerializeAsAny

from ctrdistill.config import validate_config
from ctrdistill.data.schema import FeatureMap
from ctrdistill.errors import CtrDistillError, unknown_name
from ctrdistill.models.base import CTRModel, ModelConfig
from ctrdistill.models.layers.embedding import FeatureEmbedding

_MODELS: dict[str, type[CTRModel]] = {}
_ZOO: set[str] = set()


def register_model(name: str, zoo: bool = True):
    """Register a model class; `zoo=False` for composite models (ensembles) that runs save but
    that are not architectures a user picks from the zoo."""

    def decorate(cls: type[CTRModel]) -> type[CTRModel]:
        cls.name = name
        _MODELS[name] = cls
        if zoo:
            _ZOO.add(name)
        return cls

    return decorate


def _registry() -> dict[str, type[CTRModel]]:
    # Importing registers the zoo, the ensemble models (KDEF sub-networks, mutual-learning
    # peers) that runs save as models too, and the synthetic benchmark's reference form.
    import ctrdistill.models.crossfm
    import ctrdistill.models.ensembles
    import ctrdistill.models.zoo  # noqa: F401

    return _MODELS


def model_names() -> list[str]:
    """The zoo's architectures."""
    _registry()
    return sorted(_ZOO)


def model_class(name: str) -> type[CTRModel]:
    models = _registry()
    if name not in models:
        raise unknown_name("model", name, model_names())
    return models[name]


def model_config(data: Any, source: str = "model") -> ModelConfig:
    """Validate a model config mapping (or pass through a validated one)."""
    if isinstance(data, ModelConfig):
        return data
    if isinstance(data, str):
        data = {"name": data}
    if not isinstance(data, dict) or "name" not in data:
        valid = ", ".join(model_names())
        raise CtrDistillError(f"{source}: a model needs a 'name' (valid: {valid})")
    cls = model_class(str(data["name"]))
    return validate_config(cls.config_class, data, source=source)


#: A model config field: a mapping or name validated against the named model's config class.
ModelSpec = Annotated[SerializeAsAny[ModelConfig], BeforeValidator(model_config)]


def build_model(config: Any, feature_map: FeatureMap,
                embedding: FeatureEmbedding | None = None) -> CTRModel:
    """The model `config` names (a mapping, a name or a validated config), freshly initialised;
    `embedding` shares an existing FeatureEmbedding with it."""
    cfg = model_config(config)
    model = model_class(cfg.name)(feature_map, cfg, embedding=embedding)
    model.reset_dense_parameters()
    return model
