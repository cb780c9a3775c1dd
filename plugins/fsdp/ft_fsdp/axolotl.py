"""Axolotl's FSDP keys as ft's ``dist=fsdp`` (PyTorch FSDP2; ft-axolotl's ``axolotl_keys`` hook)."""

from __future__ import annotations

from typing import Any

#: fsdp_config keys (with or without Axolotl's ``fsdp_`` prefix) and the ft key each sets; None: no effect.
CONFIG_KEYS: dict[str, str | None] = {
    "offload_params": "dist.cpu_offload", "reshard_after_forward": "dist.reshard_after_forward",
    "activation_checkpointing": "dist.activation_checkpointing", "cpu_ram_efficient_loading": "dist.cpu_ram_efficient_loading",
    "transformer_layer_cls_to_wrap": "dist.wrap", "state_dict_type": "dist.checkpoint_format",
    "auto_wrap_policy": None, "sync_module_states": None, "use_orig_params": None, "limit_all_gathers": None,
    "version": None, "backward_prefetch": None, "forward_prefetch": None, "cpu_offload_pin_memory": None,
    "sharding_strategy": None,
}


def fsdp_config(value: Any, config: dict[str, Any]) -> dict[str, Any]:
    """FSDP1 and FSDP2 options alike run as FSDP2 (fully_shard) in ft; wrapping by decoder layer."""
    if not isinstance(value, dict):
        raise ValueError("expected a mapping")
    out: dict[str, Any] = {"dist": "fsdp"}
    for key, item in value.items():
        name = key.removeprefix("fsdp_")
        if name not in CONFIG_KEYS:
            raise ValueError(f"fsdp_config.{key}: not an option ft's FSDP has ({', '.join(sorted(CONFIG_KEYS))})")
        if name == "sharding_strategy" and str(item) not in ("FULL_SHARD", "1"):
            raise ValueError(f"fsdp_config.{key}={item}: ft shards fully (FULL_SHARD); use dist=zero2 for gradients only")
        if name == "auto_wrap_policy" and str(item) not in ("TRANSFORMER_BASED_WRAP",):
            raise ValueError(f"fsdp_config.{key}={item}: ft wraps by layer class (TRANSFORMER_BASED_WRAP)")
        target = CONFIG_KEYS[name]
        if target is None:
            continue
        if name == "state_dict_type":
            item = "full" if "FULL" in str(item) else "sharded"
        if name == "transformer_layer_cls_to_wrap":
            item = [item] if isinstance(item, str) else item
        out[target] = item
    return out


def fsdp(value: Any, config: dict[str, Any]) -> dict[str, Any]:
    """The old list form: full_shard and auto_wrap are FSDP2's way; offload moves parameters to the CPU."""
    items = value if isinstance(value, list) else str(value).split()
    unknown = [i for i in items if i not in ("full_shard", "auto_wrap", "offload")]
    if unknown:
        raise ValueError(f"{', '.join(unknown)}: ft's FSDP shards fully (full_shard, auto_wrap, offload)")
    return {"dist": "fsdp", **({"dist.cpu_offload": True} if "offload" in items else {})}


def fsdp_version(value: Any, config: dict[str, Any]) -> str:
    """ft runs FSDP2 for both versions' options."""
    return "no effect: ft runs FSDP2 (fully_shard); FSDP1 options map to their FSDP2 equivalents"


def _one(what: str) -> Any:
    def rule(value: Any, config: dict[str, Any]) -> str:
        if int(value) > 1:
            raise ValueError(f"{what} is not in ft yet")
        return "no effect: 1, as in ft"
    rule.__doc__ = f"1 only: {what} is not in ft yet"
    return rule


AXOLOTL_KEYS: dict[str, Any] = {
    "fsdp_config": fsdp_config,
    "fsdp": fsdp,
    "fsdp_version": fsdp_version,
    "dp_shard_size": "no effect: ft shards over every process (dp_shard_size = processes)",
    "dp_replicate_size": _one("hybrid sharding (dp_replicate_size > 1)"),
    "tensor_parallel_size": _one("tensor parallelism"),
    "context_parallel_size": _one("context (sequence) parallelism"),
}
