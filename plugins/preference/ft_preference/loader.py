"""Preference rows (DPO/ORPO/IPO pairs, KTO single completions), read with ft-data's sources and checked.

Preference-method plugins tokenize pairs their own way (TRL's trainers do), so the data stage does
not tokenize them: it reads the same sources as SFT data (``data.path``, ``data.datasets``, the
validation split), checks every row, and hands back rows in the shape TRL's trainers take. See
:func:`load_preference_rows` for the contract.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from ft.api import DataError
from ft_data.api import DEFAULT_ROLE_MAP

_HH_TURN = re.compile(r"\n\n(Human|Assistant):[ ]?")


@dataclass
class PreferenceData:
    """Checked preference rows: ``train``, optional ``eval``, counts, and the row form.

    ``form`` is ``"text"`` (every field a string) or ``"messages"`` (``prompt`` a list of
    ``{"role", "content"}`` messages and each completion a list of assistant messages).
    """

    train: list[dict[str, Any]]
    eval: list[dict[str, Any]] | None = None
    form: str = "text"
    stats: dict[str, Any] = field(default_factory=dict)


def parse_hh_dialogue(text: str) -> list[dict[str, str]]:
    """Split an HH-RLHF dialogue (``\\n\\nHuman: ...\\n\\nAssistant: ...``) into messages."""
    pieces = _HH_TURN.split(text)
    if len(pieces) < 3 or pieces[0].strip():
        raise DataError("not an HH-RLHF dialogue: expected text that starts with '\\n\\nHuman: '")
    messages = []
    for speaker, content in zip(pieces[1::2], pieces[2::2]):
        messages.append({"role": "user" if speaker == "Human" else "assistant", "content": content.strip()})
    return messages


def _split_text(chosen: str, rejected: str) -> tuple[str, str, str]:
    """Implicit prompt of two full texts: their common prefix, cut before the first differing word."""
    limit = min(len(chosen), len(rejected))
    index = 0
    while index < limit and chosen[index] == rejected[index]:
        index += 1
    if index < limit or len(chosen) != len(rejected):
        while index > 0 and not chosen[index - 1].isspace():
            index -= 1
        while index > 0 and chosen[index - 1].isspace():
            index -= 1
    return chosen[:index], chosen[index:], rejected[index:]


class _Checker:
    def __init__(self, options: dict[str, Any]) -> None:
        mappings = dict(options.get("message_property_mappings") or {})
        self.role_key = mappings.get("role", "role")
        self.content_key = mappings.get("content", "content")
        roles = options.get("roles")
        self.role_map = ({s: t for t, sources in roles.items() for s in sources} if roles else dict(DEFAULT_ROLE_MAP))
        self.known = set(self.role_map.values()) | {"system", "user", "assistant", "tool"}

    def messages(self, value: Any, what: str, allow_empty: bool = False) -> list[dict[str, str]]:
        if not isinstance(value, list):
            raise DataError(f"'{what}' must be a string or a list of messages, got {type(value).__name__}")
        if not value and not allow_empty:
            raise DataError(f"'{what}' is an empty list of messages")
        out = []
        for number, message in enumerate(value, start=1):
            if not isinstance(message, dict):
                raise DataError(f"'{what}' message {number} must be an object, got {type(message).__name__}")
            role, content = message.get(self.role_key), message.get(self.content_key)
            if not isinstance(role, str):
                raise DataError(f"'{what}' message {number} needs a string '{self.role_key}'")
            mapped = self.role_map.get(role, role)
            if mapped not in self.known:
                raise DataError(f"'{what}' message {number} has an unknown role {role!r}; known roles: "
                                f"{', '.join(sorted(set(self.role_map) | self.known))}")
            if not isinstance(content, str):
                raise DataError(f"'{what}' message {number} needs a string '{self.content_key}'")
            out.append({"role": mapped, "content": content})
        return out

    def wrap(self, text: str) -> list[dict[str, str]]:
        """A bare completion string as one assistant message (in the row's own field names)."""
        return [{self.role_key: "assistant", self.content_key: text}]

    def completion(self, value: Any, what: str) -> Any:
        if isinstance(value, str):
            if not value.strip():
                raise DataError(f"'{what}' is empty")
            return value
        messages = self.messages(value, what)
        if not any(m["content"].strip() for m in messages):
            raise DataError(f"'{what}' has no text")
        return messages


def _need(row: dict[str, Any], key: str) -> Any:
    if row.get(key) is None:
        raise DataError(f"missing the field '{key}'; fields present: {', '.join(sorted(row)) or 'none'}")
    return row[key]


def check_pair(row: dict[str, Any], checker: _Checker) -> dict[str, Any]:
    """One pairwise row as ``{"prompt", "chosen", "rejected"}`` (text or messages form)."""
    chosen, rejected = _need(row, "chosen"), _need(row, "rejected")
    if row.get("prompt") is None:  # implicit prompt: the shared beginning of two whole dialogues
        if isinstance(chosen, str) and isinstance(rejected, str):
            prompt, chosen, rejected = _split_text(chosen, rejected)
        elif isinstance(chosen, list) and isinstance(rejected, list):
            full_chosen, full_rejected = checker.messages(chosen, "chosen"), checker.messages(rejected, "rejected")
            shared = 0
            while (shared < min(len(full_chosen), len(full_rejected)) - 1
                   and full_chosen[shared] == full_rejected[shared]):
                shared += 1
            prompt, chosen, rejected = full_chosen[:shared], full_chosen[shared:], full_rejected[shared:]  # type: ignore[assignment]
            if not prompt:
                raise DataError("'chosen' and 'rejected' share no prompt messages; add a 'prompt' field")
        else:
            raise DataError("without a 'prompt' field, 'chosen' and 'rejected' must both be strings or both message lists")
        if not (prompt if isinstance(prompt, list) else prompt.strip()):
            raise DataError("'chosen' and 'rejected' share no prompt text; add a 'prompt' field")
    else:
        prompt = row["prompt"]
    if isinstance(prompt, str):
        if not prompt.strip():
            raise DataError("'prompt' is empty")
        if not (isinstance(chosen, str) and isinstance(rejected, str)):
            raise DataError("with a text 'prompt', 'chosen' and 'rejected' must be strings too")
    else:
        prompt = checker.messages(prompt, "prompt")
        chosen = checker.wrap(chosen) if isinstance(chosen, str) else chosen
        rejected = checker.wrap(rejected) if isinstance(rejected, str) else rejected
    chosen, rejected = checker.completion(chosen, "chosen"), checker.completion(rejected, "rejected")
    if chosen == rejected:
        raise DataError("'chosen' and 'rejected' are identical: the pair teaches nothing")
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def check_unpaired(row: dict[str, Any], checker: _Checker) -> dict[str, Any]:
    """One KTO row as ``{"prompt", "completion", "label"}`` (text or messages form)."""
    prompt, completion, label = _need(row, "prompt"), _need(row, "completion"), _need(row, "label")
    if not isinstance(label, bool):
        raise DataError(f"'label' must be true (desirable) or false (undesirable), got {type(label).__name__}")
    if isinstance(prompt, str):
        if not prompt.strip():
            raise DataError("'prompt' is empty")
        if not isinstance(completion, str):
            raise DataError("with a text 'prompt', 'completion' must be a string too")
    else:
        prompt = checker.messages(prompt, "prompt")
        completion = checker.wrap(completion) if isinstance(completion, str) else completion
    return {"prompt": prompt, "completion": checker.completion(completion, "completion"), "label": label}


def load_preference_rows(data_cfg: Any, kind: Literal["pairwise", "unpaired"] = "pairwise", seed: int = 42,
                         rows: list[dict[str, Any]] | None = None) -> PreferenceData:
    """Read and check the preference rows a config's ``data`` section names.

    Contract for preference-method plugins (DPO, IPO, ORPO, KTO...):

    * ``data_cfg`` is ``ctx.cfg.data`` (or a plain dict). Sources are the same as for SFT:
      ``data.path`` or ``data.datasets`` (local files and folders, gzip, hub ids; each entry may set
      ``message_property_mappings`` and ``roles``), ``data.max_rows``, ``data.shuffle`` with
      ``data.seed`` (default ``seed``), and a validation split by ``data.val_size`` or by
      ``data.val_path`` / ``data.val_datasets``. ``rows`` replaces the sources with rows in memory.
    * ``kind="pairwise"`` accepts rows ``{"prompt", "chosen", "rejected"}`` where the prompt is a
      string (then chosen/rejected are strings) or a list of messages (then chosen/rejected are
      lists of assistant messages, or strings, which become one assistant message); and rows with
      no ``prompt`` whose ``chosen``/``rejected`` are whole dialogues (two strings, as in HH-RLHF, or
      two message lists): the prompt is their shared beginning. Returned rows are
      ``{"prompt", "chosen", "rejected"}`` in TRL's standard (text) or conversational (messages) form.
    * ``kind="unpaired"`` accepts and returns ``{"prompt", "completion", "label": bool}`` (KTO).
    * Roles are mapped (human/gpt -> user/assistant, or ``data.roles``); an unknown role, a missing
      or empty field, identical chosen and rejected, or mixed text and messages forms raise
      :class:`ft.errors.DataError` naming the file and line, unless ``data.bad_rows=drop``, which
      drops and counts them (``stats["dropped_bad_row"]``). No rows left is an error.
    * Nothing is tokenized here and nothing is cached: the plugin tokenizes with its trainer.
    """
    from ft_data.api import (
        RowSource,
        is_local,
        is_saved_dataset,
        load_hub,
        plain,
        policy_for,
        read_local,
        specs_from_config,
    )
    from ft_data.api import select_rows as _select

    data_cfg = plain(data_cfg) or {}
    policy = policy_for(data_cfg, seed)
    if kind not in ("pairwise", "unpaired"):
        raise ValueError(f"kind must be 'pairwise' or 'unpaired', not {kind!r}")
    check = check_pair if kind == "pairwise" else check_unpaired

    def read(spec_rows: list[tuple[Any, str]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        out: list[dict[str, Any]] = []
        stats = {"rows_in": 0, "dropped_bad_row": 0}
        for spec, _ in spec_rows:
            checker = _Checker({**data_cfg, **{k: v for k, v in vars(spec.options).items() if v is not None}})
            dropped: list[str] = []
            if spec.rows is not None:
                source = RowSource(rows=spec.rows, fingerprint="", label=spec.label)
            elif spec.path and is_local(spec.path) and not is_saved_dataset(spec.path):
                source, dropped = read_local(spec.path, spec.split, spec.data_files, policy.bad_rows)
            else:
                source = load_hub(spec.path or "", spec.name, spec.split, spec.data_files)
            picked = _select(len(source.rows), spec.max_rows, policy)
            indices = range(len(source.rows)) if picked is None else picked
            stats["rows_in"] += len(indices) + len(dropped)
            stats["dropped_bad_row"] += len(dropped)
            for index in indices:
                try:
                    out.append(check(source.rows[index], checker))
                except DataError as exc:
                    if policy.bad_rows == "drop":
                        stats["dropped_bad_row"] += 1
                        continue
                    raise DataError(f"{source.where(index)}: {exc}") from exc
        return out, stats

    if rows is not None:
        from ft_data.api import DatasetSpec, options_for

        train_specs = [DatasetSpec(format="preference", options=options_for(data_cfg), rows=list(rows), label="rows")]
        eval_specs: list[Any] = []
    else:
        train_specs = specs_from_config(data_cfg, "train")
        eval_specs = specs_from_config(data_cfg, "eval")
    train, stats = read([(s, "train") for s in train_specs])
    if not train:
        raise DataError(f"no usable preference rows ({stats['rows_in']} read, {stats['dropped_bad_row']} malformed)")
    forms = {"text" if isinstance(r["prompt"], str) else "messages" for r in train}
    if len(forms) > 1:
        raise DataError("the preference rows mix text and messages forms; use one form for every dataset")
    evaluation = None
    if eval_specs:
        evaluation, eval_stats = read([(s, "eval") for s in eval_specs])
        stats["eval_rows"] = len(evaluation)
    if policy.shuffle:
        random.Random(policy.seed).shuffle(train)
    val_size = float(data_cfg.get("val_size") or 0.0)
    if evaluation is None and val_size > 0:
        train, evaluation = split_by_prompt(train, val_size, policy.seed)
    stats["rows"] = len(train)
    return PreferenceData(train=train, eval=evaluation, form=forms.pop(), stats=stats)


def prompt_key(row: dict[str, Any]) -> str:
    """A row's prompt as a comparable key (text, or messages)."""
    return json.dumps(row["prompt"], sort_keys=True)


def split_by_prompt(rows: list[dict[str, Any]], val_size: float, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Hold out whole prompts: never one pair of a prompt in train and another in eval (the one
    held-out split of preference rows, used by the kernel's loader and the preference methods).

    ``val_size`` below 1 is a fraction of the distinct prompts, 1 or more a number of prompts; the
    held-out prompts are chosen with ``seed``, rows keep their order. Returns ``(train, eval)``.
    """
    if val_size <= 0:
        return rows, []
    prompts = list(dict.fromkeys(prompt_key(r) for r in rows))
    random.Random(seed).shuffle(prompts)
    n_eval = int(val_size) if val_size >= 1 else max(1, round(len(prompts) * val_size))
    if n_eval >= len(prompts):
        raise DataError(f"data.val_size={val_size:g} holds out {n_eval} of {len(prompts)} prompts, leaving none to train on")
    held = set(prompts[:n_eval])
    return [r for r in rows if prompt_key(r) not in held], [r for r in rows if prompt_key(r) in held]
