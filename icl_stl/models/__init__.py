"""The models: one in-context learner (`build_model`) or K of them trained as one (`build_ensemble`).

`model` holds the read-in / backbone / read-out wrapper, `backbones` the interchangeable
sequence models, `ensemble` the member axis, `gpt2` a native K-member GPT-2 that matches
`transformers`' GPT2Model member by member, and `stored` a trained model loaded from disk.
"""

from __future__ import annotations

import torch

from icl_stl.config import ModelConfig
from icl_stl.models.ensemble import Ensemble, ModuleEnsemble
from icl_stl.models.gpt2 import NativeGPT2
from icl_stl.models.model import ICLModel, build_model

__all__ = ["Ensemble", "ICLModel", "ModuleEnsemble", "NativeGPT2", "build_ensemble", "build_model"]


def build_ensemble(cfg: ModelConfig, d: int, k: int, gens: list[torch.Generator]) -> Ensemble:
    """K members on the CPU, member i initialised from gens[i] exactly as `build_model` would,
    with the engine `cfg.engine` (a ConfigError for a combination that does not exist)."""
    cfg.validate()
    if cfg.engine == "native":
        return NativeGPT2(cfg, d, k, len(gens)).init_weights_(gens)
    return ModuleEnsemble([build_model(cfg, d, k, g) for g in gens])
