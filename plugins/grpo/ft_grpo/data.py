"""Prompt data for GRPO: rows with a ``prompt`` (text or chat messages) and the columns rewards read.

Formats: ``plain`` (``{"prompt": "..."}``), ``chat`` (``{"prompt": [messages]}``), ``gsm8k`` (``{"question",
"answer": "... #### N"}``: the question becomes a user turn, the answer stays for the rewards) and
``default_task`` (ft's ``{"messages": [user, assistant]}`` rows: the user turn is the prompt, the
assistant's text the ``answer``). Every other column is kept and reaches the reward functions.
"""

from __future__ import annotations

import random
from typing import Any

from ft.api import DataError, DatasetBundle, RunContext, to_plain
from ft_data.api import read_rows
from ft_grpo.state import GrpoState

#: The reward a format implies when ``method.rewards`` is empty.
DEFAULT_REWARDS = {"default_task": "sort_partial", "gsm8k": "numeric_match"}


def detect_format(row: dict[str, Any], prompt_field: str) -> str:
    """The format of a row (``data.format=auto``)."""
    if isinstance(row.get("messages"), list):
        return "default_task"
    if "question" in row and "answer" in row and prompt_field not in row:
        return "gsm8k"
    if isinstance(row.get(prompt_field), list):
        return "chat"
    if isinstance(row.get(prompt_field), str):
        return "plain"
    raise DataError(f"cannot tell the format of a prompt row with fields {sorted(row)}: expected '{prompt_field}' "
                    "(text or chat messages), GSM8K's question/answer, or ft's messages rows; set data.format")


def with_instruction(prompt: Any, instruction: str | None) -> Any:
    """``prompt`` with ``instruction`` on a new line after it: after the last user turn of chat messages, or
    after plain text. RL can only reward what the model ever says, so a prompt that states the answer's
    format makes answers in that format appear among the samples (SFT learns the format from the answers)."""
    if not instruction:
        return prompt
    if isinstance(prompt, str):
        return f"{prompt}\n{instruction}"
    users = [i for i, m in enumerate(prompt) if m.get("role") == "user"]
    if not users:
        raise DataError("data.instruction needs a user turn in every chat prompt")
    last = users[-1]
    turn = {**prompt[last], "content": f"{prompt[last].get('content') or ''}\n{instruction}"}
    return [*prompt[:last], turn, *prompt[last + 1:]]


def normalise(row: dict[str, Any], fmt: str, prompt_field: str, system_prompt: str | None,
              instruction: str | None = None) -> dict[str, Any]:
    """One row in TRL's shape: ``prompt`` (with ``instruction`` after its last user turn) plus the other
    columns (``answer``...)."""
    converted = _convert(row, fmt, prompt_field, system_prompt)
    return {**converted, "prompt": with_instruction(converted["prompt"], instruction)}


def _convert(row: dict[str, Any], fmt: str, prompt_field: str, system_prompt: str | None) -> dict[str, Any]:
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    if fmt == "gsm8k":
        question, answer = row.get("question"), row.get("answer")
        if not isinstance(question, str) or not isinstance(answer, str):
            raise DataError("a gsm8k row needs string fields 'question' and 'answer'")
        rest = {k: v for k, v in row.items() if k not in ("question", "answer")}
        return {"prompt": [*system, {"role": "user", "content": question}], "answer": answer, **rest}
    if fmt == "default_task":
        messages = row.get("messages")
        if not isinstance(messages, list) or len(messages) < 2 or messages[-1].get("role") != "assistant":
            raise DataError("a default_task row needs messages ending with the assistant's answer")
        rest = {k: v for k, v in row.items() if k != "messages"}
        return {"prompt": [*system, *messages[:-1]], "answer": messages[-1]["content"], **rest}
    prompt = row.get(prompt_field)
    rest = {k: v for k, v in row.items() if k != prompt_field}
    if fmt == "chat":
        if not isinstance(prompt, list) or not all(isinstance(m, dict) and "role" in m for m in prompt):
            raise DataError(f"a chat row needs '{prompt_field}' as a list of messages with roles")
        return {"prompt": [*system, *prompt], **rest}
    if not isinstance(prompt, str) or not prompt.strip():
        raise DataError(f"a plain row needs a non-empty text '{prompt_field}'")
    if system_prompt:
        raise DataError("data.system_prompt needs chat prompts; plain-text prompts have no system turn")
    return {"prompt": prompt, **rest}


def prompt_text(tokenizer: Any, prompt: Any) -> str:
    """What the model sees: chat prompts through the chat template (ready for the reply), text as is."""
    if isinstance(prompt, list):
        return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    return prompt


def _count(value: float, total: int) -> int:
    return int(round(value * total)) if 0 < value < 1 else int(value)


def load_rows(data: dict[str, Any], seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    """Training and held-out rows (normalised) and the format they were read in."""
    from ft_default_task.task import split_rows as default_task_rows

    if not data.get("path"):
        task = data["task"]
        train, held_out = default_task_rows(task["train_rows"], task["eval_rows"], task["seed"])
        fmt = "default_task"
    else:
        train = read_rows(data["path"])
        if not train:
            raise DataError(f"data.path={data['path']!r} holds no rows")
        fmt = data["format"] if data["format"] != "auto" else detect_format(train[0], data["prompt_field"])
        if data.get("shuffle", True):
            random.Random(seed).shuffle(train)
        if data.get("val_path"):
            held_out = read_rows(data["val_path"])
        else:
            n = min(_count(float(data.get("val_size") or 0), len(train)), len(train) - 1)
            held_out, train = train[:n], train[n:]
    if data.get("max_rows"):
        train = train[: int(data["max_rows"])]
    if data.get("max_eval_rows"):
        held_out = held_out[: int(data["max_eval_rows"])]

    def convert(rows: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
        out = []
        for index, row in enumerate(rows):
            try:
                out.append(normalise(row, fmt, data["prompt_field"], data.get("system_prompt"), data.get("instruction")))
            except DataError as exc:
                raise DataError(f"{where} row {index + 1}: {exc}") from None
        return out

    return convert(train, data.get("path") or "default task"), convert(held_out, data.get("val_path") or "held-out"), fmt


def within_length(rows: list[dict[str, Any]], tokenizer: Any, limit: int | None) -> tuple[list[dict[str, Any]], int]:
    """The rows whose prompt fits ``limit`` tokens, and how many were dropped."""
    if not limit:
        return rows, 0
    kept = [r for r in rows if len(tokenizer(prompt_text(tokenizer, r["prompt"]), add_special_tokens=False)["input_ids"]) <= limit]
    return kept, len(rows) - len(kept)


def prepare(ctx: RunContext) -> DatasetBundle:
    """The data stage of ``method=grpo``: prompts in TRL's shape, held-out prompts kept for the report."""
    from datasets import Dataset

    data = to_plain(ctx.cfg.data)
    seed = int(data["seed"] if data.get("seed") is not None else ctx.cfg.seed)
    train, held_out, fmt = load_rows(data, seed)
    limit = ctx.cfg.method.max_prompt_length
    train, dropped = within_length(train, ctx.tokenizer, limit)
    held_out, dropped_eval = within_length(held_out, ctx.tokenizer, limit)
    if not train:
        raise DataError(f"no training prompt fits method.max_prompt_length={limit} tokens")
    state = ctx.state(GrpoState)
    state.format, state.held_out = fmt, held_out
    stats = {"train": {"rows": len(train), "dropped_too_long": dropped, "format": fmt},
             "eval": {"rows": len(held_out), "dropped_too_long": dropped_eval}}
    return DatasetBundle(Dataset.from_list(train), None, stats=stats)
