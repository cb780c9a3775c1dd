"""Preference rows: detect their shape, convert common shapes, check them, split them.

Pure Python (no torch, no tokenizer) so the converter CLI and the checks are fast and testable.

Canonical rows, what every converter produces and every check expects:

* paired: ``{"prompt": P, "chosen": C, "rejected": R}``
* unpaired (KTO): ``{"prompt": P, "completion": C, "label": bool}``

where ``P`` is a string or a list of chat messages (``{"role", "content"}``) and each completion is a
string or a list of assistant messages: text rows stay text, messages rows stay messages.

Source shapes understood (``data.format``, or ``auto`` to detect them from the first row):

* ``paired``: ``prompt`` / ``chosen`` / ``rejected``, as text or messages.
* ``unpaired``: ``prompt`` / ``completion`` / ``label`` (KTO's shape).
* ``dialogue``: ``chosen`` / ``rejected`` only, each a whole dialogue: HH-RLHF's
  ``"\\n\\nHuman: ...\\n\\nAssistant: ..."`` text, or two message lists. The shared prefix (up to the
  last assistant turn) becomes the prompt.
* ``gsm8k``: GSM8K model solutions marked right or wrong (``question``, ``ground_truth`` and one
  ``{"is_correct", "solution"}`` object per model); right solutions (and the reference answer) are
  chosen, wrong ones rejected.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ft.api import DataError

FORMATS = ("paired", "unpaired", "dialogue", "gsm8k")
HUMAN, ASSISTANT = "\n\nHuman:", "\n\nAssistant:"
_HH_TURN = re.compile(r"\n\n(Human|Assistant):[ ]?")
_CALCULATOR = re.compile(r"<<[^<>]*>>")


class RowProblem(Exception):
    """One malformed row: ``reason`` is the counter name, the message says what is wrong."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class Converted:
    """Rows after conversion and checks, with counts of what came in and what was dropped why."""

    rows: list[dict[str, Any]]
    stats: dict[str, int]


# --------------------------------------------------------------------------------------------------
# Shape detection
# --------------------------------------------------------------------------------------------------


def is_gsm8k_solutions(row: dict[str, Any]) -> bool:
    return "question" in row and any(
        isinstance(v, dict) and "is_correct" in v and "solution" in v for v in row.values()
    )


def detect_format(row: dict[str, Any]) -> str:
    """The source shape of a row (see the module docstring); :class:`DataError` if none fits."""
    keys = set(row)
    if {"prompt", "chosen", "rejected"} <= keys:
        return "paired"
    if {"prompt", "completion", "label"} <= keys:
        return "unpaired"
    if {"chosen", "rejected"} <= keys:
        return "dialogue"
    if is_gsm8k_solutions(row):
        return "gsm8k"
    raise DataError(
        f"cannot tell the preference format of a row with fields {sorted(keys)}: expected "
        f"prompt/chosen/rejected (paired), prompt/completion/label (unpaired, KTO), chosen/rejected "
        f"whole dialogues (HH-RLHF), or GSM8K model solutions; set data.format to say which"
    )


# --------------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------------


def _is_messages(value: Any) -> bool:
    return isinstance(value, list)


def check_messages(value: Any, field: str) -> None:
    if not value:
        raise RowProblem("empty", f"'{field}' is an empty message list")
    for message in value:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) or not isinstance(
            message.get("content"), str
        ):
            raise RowProblem("bad_type", f"'{field}' has a message without a string 'role' and 'content'")


def _text_of(value: Any) -> str:
    """The visible text of a completion (string, or the contents of its messages)."""
    if isinstance(value, str):
        return value
    return "".join(m["content"] for m in value)


def _require(row: dict[str, Any], field: str) -> Any:
    if field not in row or row[field] is None:
        raise RowProblem("missing_field", f"missing the field '{field}' (fields present: {', '.join(sorted(row))})")
    value = row[field]
    if not isinstance(value, (str, list)):
        raise RowProblem("bad_type", f"'{field}' must be text or a list of messages, got {type(value).__name__}")
    return value


def _completion(row: dict[str, Any], field: str, prompt: Any) -> Any:
    """A completion in the prompt's form: a string for a text prompt, messages for a messages prompt."""
    value = _require(row, field)
    if _is_messages(prompt) and isinstance(value, str):
        value = [{"role": "assistant", "content": value}]
    if isinstance(prompt, str) and _is_messages(value):
        raise RowProblem("bad_type", f"'{field}' is a message list but 'prompt' is text; use one form for both")
    if _is_messages(value):
        check_messages(value, field)
    if not _text_of(value).strip():
        raise RowProblem("empty_completion", f"'{field}' is empty")
    return value


def check_pair(row: dict[str, Any]) -> dict[str, Any]:
    """Check a paired row and return it in canonical form; raise :class:`RowProblem` if malformed."""
    prompt = _require(row, "prompt")
    if _is_messages(prompt):
        check_messages(prompt, "prompt")
    chosen = _completion(row, "chosen", prompt)
    rejected = _completion(row, "rejected", prompt)
    if chosen == rejected:
        raise RowProblem("identical", "'chosen' and 'rejected' are identical, so the pair teaches nothing")
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def check_unpaired(row: dict[str, Any]) -> dict[str, Any]:
    """Check a KTO row (prompt / completion / label) and return it in canonical form."""
    prompt = _require(row, "prompt")
    if _is_messages(prompt):
        check_messages(prompt, "prompt")
    completion = _completion(row, "completion", prompt)
    if "label" not in row:
        raise RowProblem("missing_field", f"missing the field 'label' (fields present: {', '.join(sorted(row))})")
    label = row["label"]
    if not isinstance(label, bool):
        raise RowProblem("bad_type", f"'label' must be true or false, got {label!r}")
    return {"prompt": prompt, "completion": completion, "label": label}


# --------------------------------------------------------------------------------------------------
# Converters for common shapes
# --------------------------------------------------------------------------------------------------


def hh_turns(text: str) -> list[dict[str, str]]:
    """Messages of an HH-RLHF dialogue (``\\n\\nHuman: ...\\n\\nAssistant: ...``)."""
    parts = _HH_TURN.split(text)
    if len(parts) < 3 or parts[0].strip():
        raise RowProblem("no_dialogue", "text is not an HH-RLHF dialogue ('\\n\\nHuman: ...\\n\\nAssistant: ...')")
    turns = []
    for speaker, content in zip(parts[1::2], parts[2::2]):
        turns.append({"role": "user" if speaker == "Human" else "assistant", "content": content.strip()})
    return turns


def split_text_dialogue(chosen: str, rejected: str) -> dict[str, str]:
    """Split two whole HH-RLHF dialogues at their last shared ``Assistant:`` marker.

    The shared text up to and including that marker is the prompt; the rest of each is its completion.
    """
    common = 0
    for a, b in zip(chosen, rejected):
        if a != b:
            break
        common += 1
    cut = chosen.rfind(ASSISTANT, 0, common)
    if cut < 0:
        raise RowProblem(
            "no_dialogue",
            "chosen and rejected share no '\\n\\nAssistant:' turn, so no prompt can be split off",
        )
    end = cut + len(ASSISTANT)
    return {"prompt": chosen[:end], "chosen": chosen[end:], "rejected": rejected[end:]}


def split_message_dialogue(chosen: list[Any], rejected: list[Any]) -> dict[str, Any]:
    """Split two message lists at their shared prefix; the prompt must end before an assistant turn."""
    check_messages(chosen, "chosen")
    check_messages(rejected, "rejected")
    common = 0
    for a, b in zip(chosen, rejected):
        if a != b:
            break
        common += 1
    # The completions start at the last assistant turn that is not shared.
    while common > 0 and chosen[common - 1].get("role") == "assistant":
        common -= 1
    if common == 0 or common >= len(chosen) or common >= len(rejected):
        raise RowProblem("no_dialogue", "chosen and rejected share no prompt turns followed by an assistant reply")
    return {"prompt": chosen[:common], "chosen": chosen[common:], "rejected": rejected[common:]}


def dialogue_to_pair(row: dict[str, Any], style: str = "keep") -> dict[str, Any]:
    """A whole-dialogue pair (HH-RLHF) as a prompt/chosen/rejected pair.

    ``style="messages"`` turns HH-RLHF text into chat messages (for chat templates); ``"keep"``
    leaves text as text and messages as messages.
    """
    chosen, rejected = _require(row, "chosen"), _require(row, "rejected")
    if isinstance(chosen, str) != isinstance(rejected, str):
        raise RowProblem("bad_type", "'chosen' and 'rejected' must both be text or both be message lists")
    if chosen == rejected:
        raise RowProblem("identical", "'chosen' and 'rejected' are identical, so the pair teaches nothing")
    if isinstance(chosen, str):
        pair: dict[str, Any] = dict(split_text_dialogue(chosen, rejected))
        if style == "messages":
            prompt = hh_turns(pair["prompt"])[:-1]  # the last turn is the open "Assistant:"
            if not prompt:
                raise RowProblem("no_dialogue", "the shared dialogue has no turn before the replies")
            pair = {
                "prompt": prompt,
                "chosen": hh_turns(ASSISTANT + pair["chosen"]),
                "rejected": hh_turns(ASSISTANT + pair["rejected"]),
            }
        return pair
    return split_message_dialogue(chosen, rejected)


def clean_gsm8k_solution(text: str, keep_calculator: bool = False) -> str:
    """A GSM8K solution without its ``<<48/2=24>>`` calculator annotations (unless asked to keep them)."""
    return text.strip() if keep_calculator else _CALCULATOR.sub("", text).strip()


def _gsm8k_solutions(row: dict[str, Any], keep_calculator: bool) -> tuple[str, list[str], list[str]]:
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise RowProblem("missing_field", "GSM8K row has no 'question' text")
    right: list[str] = []
    wrong: list[str] = []
    if isinstance(row.get("ground_truth"), str) and row["ground_truth"].strip():
        right.append(clean_gsm8k_solution(row["ground_truth"], keep_calculator))
    for value in row.values():
        if isinstance(value, dict) and "is_correct" in value and isinstance(value.get("solution"), str):
            solution = clean_gsm8k_solution(value["solution"], keep_calculator)
            if solution:
                (right if value["is_correct"] else wrong).append(solution)
    # Two models can write the same solution: keep one of each, in order.
    right = list(dict.fromkeys(right))
    wrong = [s for s in dict.fromkeys(wrong) if s not in right]
    return question.strip(), right, wrong


def _gsm8k_prompt(question: str, style: str) -> Any:
    if style == "messages":
        return [{"role": "user", "content": question}]
    return f"Question: {question}\nAnswer: "


def _gsm8k_completion(solution: str, style: str) -> Any:
    return [{"role": "assistant", "content": solution}] if style == "messages" else solution


def gsm8k_to_pairs(row: dict[str, Any], max_pairs: int = 4, style: str = "messages",
                   keep_calculator: bool = False) -> list[dict[str, Any]]:
    """Pairs from one GSM8K question: right solutions (reference first) against wrong ones.

    Pairs are taken so that every wrong solution is used before any is reused, up to ``max_pairs``.
    A question with no wrong solution yields no pair.
    """
    question, right, wrong = _gsm8k_solutions(row, keep_calculator)
    pairs = []
    for offset in range(len(right)):
        for index, bad in enumerate(wrong):
            pairs.append((right[(index + offset) % len(right)], bad))
    prompt = _gsm8k_prompt(question, style)
    return [
        {"prompt": prompt, "chosen": _gsm8k_completion(good, style), "rejected": _gsm8k_completion(bad, style)}
        for good, bad in pairs[: max(0, max_pairs)]
    ]


def gsm8k_to_unpaired(row: dict[str, Any], style: str = "messages",
                      keep_calculator: bool = False) -> list[dict[str, Any]]:
    """KTO rows from one GSM8K question: every distinct solution, labelled right (true) or wrong."""
    question, right, wrong = _gsm8k_solutions(row, keep_calculator)
    prompt = _gsm8k_prompt(question, style)
    return [{"prompt": prompt, "completion": _gsm8k_completion(s, style), "label": True} for s in right] + [
        {"prompt": prompt, "completion": _gsm8k_completion(s, style), "label": False} for s in wrong
    ]


def pairs_to_unpaired(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """KTO rows from pairs: each distinct chosen is desirable, each distinct rejected undesirable."""
    seen: set[str] = set()
    out = []
    for pair in pairs:
        for field, label in (("chosen", True), ("rejected", False)):
            key = json.dumps([pair["prompt"], pair[field], label], sort_keys=True)
            if key not in seen:
                seen.add(key)
                out.append({"prompt": pair["prompt"], "completion": pair[field], "label": label})
    return out


# --------------------------------------------------------------------------------------------------
# Whole files
# --------------------------------------------------------------------------------------------------


def convert_rows(rows: list[dict[str, Any]], fmt: str = "auto", kind: str = "paired", *,
                 bad_rows: str = "error", max_pairs_per_prompt: int = 4, source: str = "data",
                 style: str = "keep") -> Converted:
    """Convert source rows into checked canonical rows of ``kind`` (``paired`` or ``unpaired``).

    ``bad_rows="error"`` stops at the first malformed row with its file and row number;
    ``"drop"`` skips it and counts it under ``dropped_<reason>``. ``style``: ``keep`` leaves text as
    text and messages as messages (GSM8K becomes messages); ``messages`` also parses HH-RLHF text
    into chat messages; ``text`` writes GSM8K rows as plain text.
    """
    if kind not in ("paired", "unpaired"):
        raise ValueError(f"kind must be 'paired' or 'unpaired', not {kind!r}")
    if not rows:
        raise DataError(f"{source}: no rows")
    if fmt == "auto":
        fmt = detect_format(rows[0])
    if fmt not in FORMATS:
        raise DataError(f"data.format={fmt!r}: unknown preference format; known: auto, {', '.join(FORMATS)}")
    if fmt == "unpaired" and kind == "paired":
        raise DataError(
            f"{source}: rows are unpaired (prompt/completion/label), but this method trains on pairs "
            f"(prompt/chosen/rejected); use method=kto, or pair the completions"
        )
    stats: Counter[str] = Counter(rows_in=len(rows))
    out: list[dict[str, Any]] = []
    gsm8k_style = "messages" if style in ("keep", "messages") else "text"
    for number, row in enumerate(rows, start=1):
        try:
            if fmt == "gsm8k" and kind == "unpaired":
                produced = [check_unpaired(r) for r in gsm8k_to_unpaired(row, gsm8k_style)]
            elif fmt == "unpaired":
                produced = [check_unpaired(row)]
            else:
                if fmt == "gsm8k":
                    produced = gsm8k_to_pairs(row, max_pairs_per_prompt, gsm8k_style)
                    if not produced:
                        stats["skipped_no_pair"] += 1
                elif fmt == "dialogue":
                    produced = [dialogue_to_pair(row, style)]
                else:
                    produced = [row]
                produced = [check_pair(p) for p in produced]
                if kind == "unpaired":
                    produced = pairs_to_unpaired(produced)
        except RowProblem as problem:
            if bad_rows != "drop":
                raise DataError(
                    f"{source} row {number}: {problem} (fix the row, or set data.bad_rows=drop to skip such rows)"
                ) from None
            stats[f"dropped_{problem.reason}"] += 1
            continue
        out.extend(produced)
    if kind == "unpaired" and fmt != "unpaired":
        # One prompt may appear in many pairs: keep each labelled completion once.
        out = _dedupe(out)
    stats["rows_out"] = len(out)
    if not out:
        dropped = {k: v for k, v in stats.items() if k.startswith(("dropped_", "skipped_"))}
        raise DataError(f"{source}: no usable preference rows remain ({dict(dropped) or 'nothing to train on'})")
    return Converted(out, dict(stats))


def _dedupe(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    out = []
    for row in rows:
        key = json.dumps(row, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out
