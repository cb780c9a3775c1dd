"""Axolotl's model and tokenizer keys as ft's ``model.*`` (ft-axolotl's ``axolotl_keys`` hook)."""

from __future__ import annotations

from typing import Any


def model_type(value: Any, config: dict[str, Any]) -> str:
    """Causal LM classes: ft's AutoModelForCausalLM picks them; other model classes are refused."""
    name = str(value)
    if name.endswith("ForConditionalGeneration") or "Vision" in name:
        raise ValueError("vision-language models are not in ft yet; ft trains causal language models")
    if name == "AutoModelForCausalLM" or name.endswith("ForCausalLM"):
        return "no effect: ft loads AutoModelForCausalLM, which picks this class from the model's config"
    raise ValueError("ft trains causal language models (AutoModelForCausalLM)")


def base_model_config(value: Any, config: dict[str, Any]) -> str:
    """The same as base_model: no effect; another model's config is refused."""
    if value == config.get("base_model"):
        return "no effect: the same as base_model"
    raise ValueError("a config from another model than base_model is not in ft")


def attn_implementation(value: Any, config: dict[str, Any]) -> dict[str, Any]:
    """model.attn_implementation (xformers is refused)."""
    if value == "xformers":
        raise ValueError("xformers attention is not in ft; use sdpa or flash_attention_2")
    return {"model.attn_implementation": value}


def _switch(implementation: str) -> Any:
    def rule(value: Any, config: dict[str, Any]) -> dict[str, Any] | str:
        if not value:
            return "no effect: off"
        if config.get("attn_implementation"):
            return "no effect: attn_implementation is given"
        return {"model.attn_implementation": implementation}
    rule.__doc__ = f"model.attn_implementation={implementation} (unless attn_implementation is given)"
    return rule


def _dtype(name: str) -> Any:
    def rule(value: Any, config: dict[str, Any]) -> dict[str, Any] | str:
        return {"model.dtype": name} if value else "no effect: off"
    rule.__doc__ = f"model.dtype={name} (the weights' dtype)"
    return rule


def torch_dtype(value: Any, config: dict[str, Any]) -> dict[str, Any]:
    """model.dtype (bf16, fp16, fp32 spellings accepted)."""
    names = {"bfloat16": "bfloat16", "bf16": "bfloat16", "float16": "float16", "fp16": "float16", "float32": "float32",
             "fp32": "float32", "auto": "auto"}
    if str(value) not in names:
        raise ValueError(f"expected one of {', '.join(names)}")
    return {"model.dtype": names[str(value)]}


def tokenizer_type(value: Any, config: dict[str, Any]) -> str:
    """ft's AutoTokenizer picks the class the model's files name."""
    return "no effect: ft loads AutoTokenizer, which picks the class the model's files name"


def special_tokens(value: Any, config: dict[str, Any]) -> dict[str, Any]:
    """Set on the tokenizer; a token not in the vocabulary is added and the embeddings grow (as in Axolotl)."""
    if not isinstance(value, dict):
        raise ValueError("expected a mapping such as {pad_token: '<|end_of_text|>'}")
    return {"model.special_tokens": {str(k): str(v) for k, v in value.items()}}


def tokens(value: Any, config: dict[str, Any]) -> dict[str, Any]:
    """model.added_tokens: new tokens join the vocabulary (the embeddings grow)."""
    if not isinstance(value, list):
        raise ValueError("expected a list of new tokens (special tokens go under special_tokens)")
    return {"model.added_tokens": [str(v) for v in value]}


def unfrozen_parameters(value: Any, config: dict[str, Any]) -> dict[str, Any] | str:
    """Axolotl's patterns as ft's regular expressions (a dot not before '+' is a literal dot, re.match)."""
    import re

    patterns = [value] if isinstance(value, str) else list(value)
    if any(re.search(r"\[[0-9]*(:[0-9]*)?\]$", p) for p in patterns):
        raise ValueError("row ranges ([:32000]) are not in ft; unfreeze whole parameters")
    if config.get("adapter"):
        raise ValueError("with an adapter, the adapter is what trains in ft; unfreeze parameters in a full fine-tune")
    return {"model.unfrozen_parameters": [re.sub(r"\.(?!\+)", r"\\.", p) for p in patterns]}


AXOLOTL_KEYS: dict[str, Any] = {
    "base_model": "model.name_or_path",
    "base_model_config": base_model_config,
    "tokenizer_config": "model.tokenizer",
    "tokenizer_type": tokenizer_type,
    "tokenizer_use_fast": "no effect: ft uses the fast tokenizer where the model has one",
    "model_type": model_type,
    "trust_remote_code": "model.trust_remote_code",
    "revision_of_model": "model.revision",
    "attn_implementation": attn_implementation,
    "flash_attention": _switch("flash_attention_2"),
    "sdp_attention": _switch("sdpa"),
    "flex_attention": _switch("flex_attention"),
    "eager_attention": _switch("eager"),
    "xformers_attention": "only false: xformers attention",
    "flash_attn_cross_entropy": "only false: flash-attn's fused cross entropy (ft's: kernels=cce or liger)",
    "flash_attn_rms_norm": "only false: flash-attn's fused RMSNorm (ft's: kernels=liger)",
    "flash_attn_fuse_qkv": "only false: flash-attn's fused QKV",
    "flash_attn_fuse_mlp": "only false: flash-attn's fused MLP",
    "bfloat16": _dtype("bfloat16"),
    "float16": _dtype("float16"),
    "torch_dtype": torch_dtype,
    "special_tokens": special_tokens,
    "tokens": tokens,
    "low_cpu_mem_usage": "no effect: transformers loads with low memory use already",
    "experimental_skip_move_to_device": "no effect: Axolotl's loading shortcut (when the model moves to the device)",
    "resize_token_embeddings_to_32x": lambda value, config: {"model.pad_vocab_to_multiple_of": 32} if value
    else "no effect: off",
    "model_config": "model.config_overrides",
    "unfrozen_parameters": unfrozen_parameters,
    "tokenizer_use_mistral_common": "only false: mistral-common tokenizers",
}
