"""Axolotl's preference keys (``rl: dpo|ipo|kto|orpo|simpo``, ``dpo_*``...) as ft's ``method=`` options
(ft-axolotl's ``axolotl_keys`` hook)."""

from __future__ import annotations

from typing import Any

METHODS = ("dpo", "ipo", "kto", "orpo", "simpo")


def rl(value: Any, config: dict[str, Any]) -> dict[str, Any] | None:
    """rl: dpo, ipo, kto, orpo, simpo: ft's method= option of that name."""
    return {"method": value} if value in METHODS else None


def datasets(value: Any, config: dict[str, Any]) -> dict[str, Any] | None:
    """One file of prompt/chosen/rejected (or KTO prompt/completion/label) rows: data.path."""
    if config.get("rl") not in METHODS:
        return None
    if not isinstance(value, list) or len(value) != 1 or not isinstance(value[0], dict):
        raise ValueError("ft-preference reads one data set (data.path); merge the files first")
    entry = value[0]
    if entry.get("type") is not None:
        raise ValueError(f"Axolotl's '{entry['type']}' preference strategy is not translated: convert the rows to "
                         f"prompt/chosen/rejected (ft prefs convert) and give them without a type")
    unknown = sorted(set(entry) - {"path", "type", "split"})
    if unknown:
        raise ValueError(f"{', '.join(unknown)}: ft-preference reads a file's rows as they are")
    return {"data.path": entry["path"]}


def _method_key(ft_key: str, methods: tuple[str, ...] = METHODS, shared: bool = False) -> Any:
    """``shared``: a key other plugins map too (sequence_len): not this plugin's unless rl is one of its methods."""
    def rule(value: Any, config: dict[str, Any]) -> dict[str, Any] | str | None:
        if config.get("rl") not in methods:
            return None if shared else f"no effect: rl is not {'/'.join(methods)}"
        return {ft_key: value}
    rule.__doc__ = f"{ft_key} with rl: {'/'.join(methods)}"
    return rule


def chat_template(value: Any, config: dict[str, Any]) -> dict[str, Any] | str | None:
    """Axolotl's named templates are the model family's own: the tokenizer's; a Jinja string replaces it."""
    if config.get("rl") not in METHODS:
        return None
    text = str(value)
    if "{{" in text or "{%" in text:
        return {"model.chat_template": text}
    if text == "chatml":
        raise ValueError("give the ChatML template as a Jinja string (chat_template_jinja) for preference data")
    return "no effect: the tokenizer's own chat template (Axolotl's named ones are the model family's)"


AXOLOTL_KEYS: dict[str, Any] = {
    "rl": rl,
    "sequence_len": _method_key("method.max_length", shared=True),
    "chat_template": chat_template,
    "chat_template_jinja": chat_template,
    "datasets": datasets,
    "rl_beta": _method_key("method.beta"),
    "dpo_beta": _method_key("method.beta"),
    "orpo_alpha": _method_key("method.beta", ("orpo",)),
    "dpo_label_smoothing": _method_key("method.label_smoothing", ("dpo",)),
    "dpo_loss_type": _method_key("method.loss_type", ("dpo",)),
    "kto_desirable_weight": _method_key("method.desirable_weight", ("kto",)),
    "kto_undesirable_weight": _method_key("method.undesirable_weight", ("kto",)),
    "simpo_gamma": _method_key("method.gamma", ("simpo",)),
    "cpo_alpha": _method_key("method.cpo_alpha", ("simpo",)),
    "precompute_ref_log_probs": _method_key("method.precompute_ref_log_probs", ("dpo", "ipo", "kto")),
}
