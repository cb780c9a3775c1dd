"""Typed schemas of the options ft-preference provides (``method/<name>``, ``data/preference``).

ft validates every key, type and enum against these dataclasses before any model or data loads.
Torch-free on purpose: ``ft validate`` imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ft.api import bounded, path_field
from ft_data.schema import DatasetConfig as DatasetEntry  # one entry of ``data.datasets``: ft-data's schema

#: The loss variants TRL 1.16's DPOTrainer implements (``DPOConfig.loss_type``).
DpoLossType = Literal[
    "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
    "aot_unpaired", "apo_zero", "apo_down", "discopop", "sigmoid_norm",
]


@dataclass
class _Lengths:
    """Token limits shared by every method (applied by ft's data stage and by TRL)."""

    max_length: int | None = bounded(512, ge=1)
    max_prompt_length: int | None = bounded(None, ge=1)
    max_completion_length: int | None = bounded(None, ge=1)


@dataclass
class DpoConfig(_Lengths):
    """``method=dpo``: Direct Preference Optimization against a frozen reference."""

    name: str = "dpo"
    beta: float = bounded(0.1, gt=0)
    loss_type: DpoLossType = "sigmoid"
    label_smoothing: float = bounded(0.0, ge=0, lt=0.5)
    precompute_ref_log_probs: bool = False
    reference_adapter: Literal["auto", "base", "copy"] = "auto"
    eval_before: bool = True


@dataclass
class IpoConfig(_Lengths):
    """``method=ipo``: Identity Preference Optimization (DPO's trainer with the IPO loss)."""

    name: str = "ipo"
    beta: float = bounded(0.1, gt=0)
    precompute_ref_log_probs: bool = False
    reference_adapter: Literal["auto", "base", "copy"] = "auto"
    eval_before: bool = True


@dataclass
class KtoConfig(_Lengths):
    """``method=kto``: Kahneman-Tversky Optimization on completions labelled good or bad."""

    name: str = "kto"
    beta: float = bounded(0.1, gt=0)
    loss_type: Literal["kto", "apo_zero_unpaired"] = "kto"
    desirable_weight: float = bounded(1.0, gt=0)
    undesirable_weight: float = bounded(1.0, gt=0)
    precompute_ref_log_probs: bool = False
    reference_adapter: Literal["auto", "base", "copy"] = "auto"
    eval_before: bool = True


@dataclass
class OrpoConfig(_Lengths):
    """``method=orpo``: Odds Ratio Preference Optimization (SFT + odds-ratio term, no reference)."""

    name: str = "orpo"
    beta: float = bounded(0.1, gt=0)
    eval_before: bool = True


@dataclass
class SimpoConfig(_Lengths):
    """``method=simpo``: SimPO, length-normalised rewards with a target margin (TRL's CPO trainer)."""

    name: str = "simpo"
    beta: float = bounded(2.0, gt=0)
    gamma: float = bounded(1.0, ge=0)
    cpo_alpha: float = bounded(0.0, ge=0)
    label_smoothing: float = bounded(0.0, ge=0, lt=0.5)
    eval_before: bool = True


@dataclass
class EmbeddedPairsConfig:
    """``data.task``: the embedded default's pairs, used when ``data.path`` (and ``data.datasets``) is unset."""

    train_pairs: int = bounded(128, ge=1)
    eval_pairs: int = bounded(32, ge=0)
    seed: int = 1234


@dataclass
class PreferenceDataConfig:
    """``data=preference``: one local file of preference rows (selected by every preference method)."""

    path: str | None = path_field()
    format: Literal["auto", "paired", "unpaired", "dialogue", "gsm8k"] = "auto"
    datasets: list[DatasetEntry] = field(default_factory=list)
    val_path: str | None = path_field()
    val_datasets: list[DatasetEntry] = field(default_factory=list)
    val_size: float = bounded(0.1, ge=0)
    max_rows: int | None = bounded(None, ge=1)
    max_eval_rows: int | None = bounded(None, ge=1)
    shuffle: bool = True
    seed: int | None = None
    bad_rows: Literal["error", "drop"] = "error"
    message_property_mappings: dict[str, str] | None = None
    roles: dict[str, list[str]] | None = None
    text_as_chat: bool = False
    max_pairs_per_prompt: int = bounded(4, ge=1)
    task: EmbeddedPairsConfig = field(default_factory=EmbeddedPairsConfig)


METHOD_SCHEMAS: dict[str, type] = {
    "method/dpo": DpoConfig,
    "method/ipo": IpoConfig,
    "method/kto": KtoConfig,
    "method/orpo": OrpoConfig,
    "method/simpo": SimpoConfig,
}

SCHEMAS: dict[str, type] = {**METHOD_SCHEMAS, "data/preference": PreferenceDataConfig}
