"""The ``model`` section's schema: what to load and how (read at ``ft validate``; no torch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ft.api import bounded

#: transformers' attention implementations (``model.attn_implementation``); a hub kernel ("org/repo") also works.
ATTENTION_IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2", "flash_attention_3", "flash_attention_4",
                             "flex_attention", "paged|eager", "paged|sdpa", "paged|flash_attention_2")


@dataclass
class ModelConfig:
    name_or_path: str = "builtin:smollm2-135m-instruct"
    tokenizer: str | None = None
    revision: str | None = None
    trust_remote_code: bool = False
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    attn_implementation: str | None = "sdpa"
    chat_template: str | None = None
    special_tokens: dict[str, str] | None = None
    added_tokens: list[str] | None = None
    pad_vocab_to_multiple_of: int | None = bounded(None, ge=1)
    config_overrides: dict[str, Any] | None = None
    unfrozen_parameters: list[str] | None = None


#: ``model`` is a group every run has: this schema checks whichever option is selected.
SCHEMAS: dict[str, type] = {"model": ModelConfig}
