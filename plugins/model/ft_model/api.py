"""ft-model's public API: what other plugins may import from this distribution (declare ``ft-model`` as a
dependency): naming, finding and loading models the way a run does, offline-first."""

from __future__ import annotations

from ft_model.plugin import (
                             BUILTIN_MODELS,
                             ModelError,
                             from_pretrained_offline_first,
                             local_model_folder,
                             resolve_model_path,
                             torch_dtype,
)
from ft_model.smollm2 import ensure_smollm2

__all__ = ["BUILTIN_MODELS", "ModelError", "ensure_smollm2", "from_pretrained_offline_first", "local_model_folder",
           "resolve_model_path", "torch_dtype"]
