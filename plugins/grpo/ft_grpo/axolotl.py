"""Axolotl's ``rl: grpo`` and ``trl:`` keys as ft's ``method=grpo`` (ft-axolotl's ``axolotl_keys`` hook)."""

from __future__ import annotations

from typing import Any

#: trl: keys with the same name in ft's method section.
SAME = ("beta", "num_generations", "max_completion_length", "temperature", "top_p", "top_k", "repetition_penalty",
        "epsilon", "epsilon_high", "loss_type", "importance_sampling_level", "mask_truncated_completions",
        "num_iterations", "use_vllm", "vllm_mode")
NO_EFFECT = ("vllm_server_host", "vllm_server_port", "vllm_server_timeout", "log_completions", "sync_ref_model")


def rl(value: Any, config: dict[str, Any]) -> dict[str, Any] | None:
    """rl: grpo: method=grpo."""
    return {"method": "grpo"} if value == "grpo" else None


def trl(value: Any, config: dict[str, Any]) -> dict[str, Any] | str:
    """scale_rewards true/false is TRL's older spelling of group/none; reward_funcs are import paths."""
    if config.get("rl") != "grpo":
        return "no effect: rl is not grpo"
    if not isinstance(value, dict):
        raise ValueError("expected a mapping")
    out: dict[str, Any] = {}
    funcs, weights = value.get("reward_funcs") or [], value.get("reward_weights") or []
    for key, item in value.items():
        if key in SAME:
            out[f"method.{key}"] = item
        elif key == "scale_rewards":
            out["method.scale_rewards"] = {True: "group", False: "none"}.get(item, item)
        elif key in ("reward_funcs", "reward_weights"):
            continue
        elif key not in NO_EFFECT:
            raise ValueError(f"trl.{key}: not an option of ft's GRPO (docs/grpo.md lists them)")
    if funcs:
        out["method.rewards"] = [{"name": str(f) if ":" in str(f) else _path(str(f)),
                                  "weight": float(weights[i]) if i < len(weights) else 1.0} for i, f in enumerate(funcs)]
    return out


def _path(dotted: str) -> str:
    """Axolotl's ``module.function`` as ft's ``module:function``."""
    module, _, name = dotted.rpartition(".")
    return f"{module}:{name}" if module else dotted


def datasets(value: Any, config: dict[str, Any]) -> dict[str, Any] | None:
    """One prompts file: data.path (rows with a prompt, and the columns your rewards read)."""
    if config.get("rl") != "grpo":
        return None
    if not isinstance(value, list) or len(value) != 1 or not isinstance(value[0], dict):
        raise ValueError("ft's GRPO reads one prompts data set (data.path)")
    if value[0].get("type") is not None:
        raise ValueError(f"the row transform '{value[0]['type']}' is Axolotl Python; give rows with a 'prompt' field")
    return {"data.path": value[0]["path"]}


def _grpo_no_effect(why: str) -> Any:
    def rule(value: Any, config: dict[str, Any]) -> str | None:
        return f"no effect: {why}" if config.get("rl") == "grpo" else None
    rule.__doc__ = f"with rl: grpo, no effect: {why}"
    return rule


AXOLOTL_KEYS: dict[str, Any] = {
    "rl": rl, "trl": trl, "datasets": datasets,
    "sequence_len": _grpo_no_effect("GRPO's lengths are trl.max_completion_length and method.max_prompt_length"),
    "chat_template": _grpo_no_effect("prompts are rendered with the tokenizer's own chat template"),
}
