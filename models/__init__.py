"""Reference models and user models, built the same way for every runtime."""

from edgebench.models.loading import LoadedModel, load_model, make_input, rebuild_model
from edgebench.models.sources import REFERENCE_MODELS, ModelSource, resolve_source

__all__ = [
    "REFERENCE_MODELS",
    "LoadedModel",
    "ModelSource",
    "load_model",
    "make_input",
    "rebuild_model",
    "resolve_source",
]
