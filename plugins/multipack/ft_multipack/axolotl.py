"""Axolotl's sample packing keys as ft's ``packing=multipack`` (ft-axolotl's ``axolotl_keys`` hook)."""

from __future__ import annotations

from typing import Any


def sample_packing(value: Any, config: dict[str, Any]) -> dict[str, Any] | str:
    """micro_batch_size counts packs of sequence_len tokens, in Axolotl and in ft."""
    return {"packing": "multipack"} if value else "no effect: off (one row a sequence, as in ft)"


def eval_sample_packing(value: Any, config: dict[str, Any]) -> dict[str, Any] | str:
    """packing.eval (with sample_packing)."""
    if not config.get("sample_packing"):
        return "no effect: sample_packing is off"
    return {"packing.eval": bool(value)}


AXOLOTL_KEYS: dict[str, Any] = {
    "sample_packing": sample_packing,
    "eval_sample_packing": eval_sample_packing,
    "sample_packing_eff_est": "no effect: ft measures the packing efficiency",
    "sample_packing_group_size": "packing.group_size",
    "multipack_real_batches": "only false: real batches in place of packs",
}
