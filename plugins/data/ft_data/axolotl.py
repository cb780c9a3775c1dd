"""Axolotl's data keys as ft's ``data`` section (ft-axolotl's ``axolotl_keys`` hook).

``datasets:`` entries keep their names (docs/data.md, "Coming from Axolotl": ft's formats give Axolotl
0.19's tokens and labels); ``type`` becomes ``format``. Preference and RL data (``rl:`` set) is the
method plugins' to translate.
"""

from __future__ import annotations

from typing import Any

#: Axolotl dataset types ft reads with the same tokens and labels, and the ft ``data`` option for each.
FORMATS = {"alpaca": "alpaca", "chat_template": "chat", "completion": "completion", "input_output": "chat"}

#: Keys of a ``datasets:`` entry copied as they are (the same names and meaning in ft).
SAME_NAME = ("path", "split", "name", "data_files", "field_messages", "message_property_mappings", "roles",
             "roles_to_train", "train_on_eos", "eot_tokens", "train_on_eot", "message_field_training", "field_system", "field", "train_on_inputs")

#: Keys of an entry that change nothing in ft.
NO_EFFECT = {"ds_type": "ft reads the file kind from its name", "revision": None, "trust_remote_code": None}


def _chat_template(value: Any) -> str | None:
    """chatml and Jinja strings as they are; tokenizer_default and Axolotl's other named templates (llama3,
    gemma3, qwen3...) are None: the tokenizer's own template, which for a model of that family is that one."""
    text = str(value)
    return text if text == "chatml" or "{{" in text or "{%" in text else None


def _entry(index: int, entry: Any, prefix: str) -> dict[str, Any]:
    where = f"{prefix}[{index}]"
    if not isinstance(entry, dict) or "path" not in entry:
        raise ValueError(f"{where}: expected a mapping with at least 'path'")
    kind = entry.get("type")
    if isinstance(kind, dict):
        raise ValueError(f"{where}.type: a custom prompt format (a mapping) is not in ft; use format=template "
                         f"(docs/data.md) or convert the rows to chat_template")
    if kind is None and entry.get("field_messages"):
        kind = "chat_template"
    if kind not in FORMATS:
        raise ValueError(f"{where}.type={kind!r}: ft reads {', '.join(FORMATS)} (Axolotl's other prompt styles "
                         f"are not in ft)")
    out: dict[str, Any] = {"format": kind}
    for key, value in entry.items():
        if key == "type" or value is None:
            continue
        if key in SAME_NAME:
            out[key] = value
        elif key in ("message_field_role", "message_field_content"):
            mappings = out.setdefault("message_property_mappings", {})
            mappings[key.removeprefix("message_field_")] = value
        elif key == "chat_template":
            template = _chat_template(value)
            if template is not None:
                out["chat_template"] = template
        elif key == "chat_template_jinja":
            out["chat_template"] = value
        elif key in NO_EFFECT:
            continue
        else:
            raise ValueError(f"{where}.{key}: not in ft's dataset options (docs/data.md lists them)")
    return out


def datasets(value: Any, config: dict[str, Any]) -> dict[str, Any] | None:
    """Each entry's type is ft's format (same tokens and labels as Axolotl 0.19); data.path is unset."""
    if config.get("rl") or config.get("reward_model") or config.get("process_reward_model"):
        return None  # preference and RL data: the method plugin's
    if not isinstance(value, list) or not value:
        raise ValueError("expected a list of datasets")
    entries = [_entry(i, e, "datasets") for i, e in enumerate(value)]
    return {"data": FORMATS[entries[0]["format"]], "data.path": None, "data.format": entries[0]["format"],
            "data.datasets": entries}


def test_datasets(value: Any, config: dict[str, Any]) -> dict[str, Any] | None:
    """The evaluation split (ft's data.val_datasets); val_set_size is then unused, as in Axolotl."""
    if config.get("rl"):
        return None
    return {"data.val_datasets": [_entry(i, e, "test_datasets") for i, e in enumerate(value)]}


def chat_template(value: Any, config: dict[str, Any]) -> dict[str, Any] | str:
    """Axolotl's named templates (llama3, gemma3...) are those families' own: ft uses the tokenizer's template."""
    return {"data.chat_template": _chat_template(value)}


def excess_length_strategy(value: Any, config: dict[str, Any]) -> dict[str, Any]:
    """data.too_long: drop, truncate, or (raise) error."""
    mapping = {"drop": "drop", "truncate": "truncate", "raise": "error"}
    if value not in mapping:
        raise ValueError(f"expected one of {', '.join(mapping)}")
    return {"data.too_long": mapping[value]}


def val_set_size(value: Any, config: dict[str, Any]) -> dict[str, Any]:
    """A fraction below 1, a count of rows from 1 (the same in ft's data.val_size)."""
    return {"data.val_size": float(value) if float(value) < 1 else int(value)}


def _sft_data(rule: Any, others_map_it: bool = False) -> Any:
    """A data key of supervised data; with ``rl:`` set the method's data is not ft-data's (its plugin may map
    the key, e.g. ``sequence_len`` as ft-preference's method.max_length)."""
    def wrapped(value: Any, config: dict[str, Any]) -> Any:
        if config.get("rl"):
            return None if others_map_it else f"no effect: rl: {config['rl']} reads its rows as they are"
        return {rule: value} if isinstance(rule, str) else rule(value, config)
    wrapped.__doc__ = (f"data.{rule.split('.', 1)[1]} (supervised data)" if isinstance(rule, str)
                       else getattr(rule, "__doc__", None))
    return wrapped


#: Keys of supervised data (with ``rl:`` set, the method's plugin reads its own rows); the method plugins map
#: the first three themselves when ``rl:`` is theirs.
_MAPPED_BY_METHODS_TOO = ("sequence_len", "chat_template", "chat_template_jinja")
_SUPERVISED: dict[str, Any] = {
    "sequence_len": "data.sequence_len",
    "chat_template": chat_template,
    "chat_template_jinja": "data.chat_template",
    "train_on_inputs": "data.train_on_inputs",
    "eot_tokens": "data.eot_tokens",
    "train_on_eot": "data.train_on_eot",
    "excess_length_strategy": excess_length_strategy,
    "min_sample_len": "data.min_len",
    "shuffle_merged_datasets": "data.shuffle",
    "dataset_processes": "data.num_proc",
    "dataset_num_proc": "data.num_proc",
}

AXOLOTL_KEYS: dict[str, Any] = {
    "datasets": datasets,
    "test_datasets": test_datasets,
    "val_set_size": val_set_size,
    **{key: _sft_data(rule, key in _MAPPED_BY_METHODS_TOO) for key, rule in _SUPERVISED.items()},
    "dataset_prepared_path": "no effect: ft tokenizes once and caches under $FT_CACHE_DIR/data; "
                             "datasets prepared by `axolotl preprocess` are not read",
    "skip_prepare_dataset": "no effect: ft tokenizes once and caches the result",
    "pad_to_sequence_len": "no effect: padding is masked out of the loss; ft pads to the longest row of a batch",
    "remove_unused_columns": "no effect: ft builds the model's inputs itself",
    "dataset_exact_deduplication": "only false: deduplication of rows",
    "streaming": "only false: streaming data sets",
}
