"""Turn canonical preference rows into the plain-text rows every TRL trainer accepts alike.

Messages are rendered here with the tokenizer's chat template (prompt with the generation prompt,
each completion as the rest of the full conversation), so DPO, KTO, ORPO and SimPO all see the same
text and ft's token limits apply the same way to every method. Needs a tokenizer, never torch.
"""

from __future__ import annotations

from typing import Any

from ft.api import DataError


class Renderer:
    """Renders rows with one tokenizer; ``text_as_chat`` also wraps plain-text rows as chat turns."""

    def __init__(self, tokenizer: Any, text_as_chat: bool = False) -> None:
        self.tokenizer = tokenizer
        self.text_as_chat = text_as_chat
        self.eos = tokenizer.eos_token or ""
        self._bos_added = self._tokenizer_adds_bos()

    def _tokenizer_adds_bos(self) -> bool:
        bos = self.tokenizer.bos_token_id
        if bos is None:
            return False
        ids = self.tokenizer("a")["input_ids"]
        return bool(ids) and ids[0] == bos

    def _needs_template(self, prompt: Any) -> bool:
        return isinstance(prompt, list) or self.text_as_chat

    def prompt(self, prompt: Any) -> str:
        if not self._needs_template(prompt):
            return prompt
        messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        text = self._template(messages, add_generation_prompt=True)
        # TRL tokenizes text with special tokens on: drop a BOS the template already wrote.
        if self._bos_added and self.tokenizer.bos_token and text.startswith(self.tokenizer.bos_token):
            text = text[len(self.tokenizer.bos_token):]
        return text

    def completion(self, prompt: Any, completion: Any) -> str:
        if not self._needs_template(prompt):
            return completion
        messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        reply = completion if isinstance(completion, list) else [{"role": "assistant", "content": completion}]
        full = self._template(messages + reply, add_generation_prompt=False)
        start = self._template(messages, add_generation_prompt=True)
        if not full.startswith(start):
            raise DataError(
                "the chat template does not render the prompt as a prefix of the whole conversation, "
                "so the completion cannot be cut off exactly; use plain-text rows or another template"
            )
        text = full[len(start):]
        # The template writes whitespace after the end-of-turn token; TRL appends EOS when the
        # completion does not end with it, so end exactly on it.
        stripped = text.rstrip()
        if self.eos and stripped.endswith(self.eos):
            text = stripped
        return text

    def _template(self, messages: list[dict[str, Any]], add_generation_prompt: bool) -> str:
        if not getattr(self.tokenizer, "chat_template", None):
            raise DataError(
                "rows are chat messages (or data.text_as_chat=true) but the tokenizer has no chat template; "
                "set model.chat_template or use plain-text rows"
            )
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)

    def row(self, row: dict[str, Any]) -> dict[str, Any]:
        """A canonical row (paired or unpaired) as plain text."""
        prompt = self.prompt(row["prompt"])
        if "completion" in row:
            return {"prompt": prompt, "completion": self.completion(row["prompt"], row["completion"]),
                    "label": row["label"]}
        return {"prompt": prompt,
                "chosen": self.completion(row["prompt"], row["chosen"]),
                "rejected": self.completion(row["prompt"], row["rejected"])}


def n_tokens(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def keep_last_tokens(tokenizer: Any, text: str, max_tokens: int) -> str:
    """The end of ``text`` that fits in ``max_tokens`` tokens, cut on a token boundary (exact text)."""
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = encoded["offset_mapping"]
    if len(offsets) <= max_tokens:
        return text
    if max_tokens <= 0:
        return ""
    return text[offsets[len(offsets) - max_tokens][0]:]


def apply_length_limits(rows: list[dict[str, Any]], tokenizer: Any, max_prompt_length: int | None,
                        max_completion_length: int | None, stats: dict[str, int]) -> list[dict[str, Any]]:
    """Cut prompts to their last ``max_prompt_length`` tokens; drop rows whose completion is longer
    than ``max_completion_length`` (a cut completion followed by EOS would teach stopping mid-answer).
    Counts both in ``stats``."""
    out = []
    for row in rows:
        if max_prompt_length and n_tokens(tokenizer, row["prompt"]) > max_prompt_length:
            row = {**row, "prompt": keep_last_tokens(tokenizer, row["prompt"], max_prompt_length)}
            stats["truncated_prompt"] = stats.get("truncated_prompt", 0) + 1
        if max_completion_length:
            fields = ("completion",) if "completion" in row else ("chosen", "rejected")
            if any(n_tokens(tokenizer, row[f]) > max_completion_length for f in fields):
                stats["dropped_too_long"] = stats.get("dropped_too_long", 0) + 1
                continue
        out.append(row)
    return out
