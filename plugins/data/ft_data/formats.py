"""Dataset formats: turn rows into ``input_ids`` and ``labels`` (-100 where the loss must not look).

The contract (also what a third-party plugin's ``dataset_formats`` hook returns):

* A format is a callable ``fn(row, tokenizer, options) -> example`` where ``example`` is a dict with
  ``input_ids`` and ``labels`` (lists of ints of equal length), or a list of such dicts when one row
  becomes several examples (a long document split into chunks). Bad input raises
  :class:`ft.errors.DataError` with a message that says what was expected; the data stage adds the
  file and line.
* ``options`` is a :class:`FormatOptions` (read it with ``getattr``; unknown attributes are ``None``).
* Optionally the callable has a ``batch`` attribute, ``batch(rows, tokenizer, options) -> list``
  returning one result per row, where a result is an example, a list of examples, or a :class:`Bad`
  (the row is malformed; its message says why). Batching lets the tokenizer work on many texts at
  once, which is where the speed is.
* Optionally ``cache_version`` (any JSON value): bump it when the format's output changes, so that
  cached data made by an older version is not reused.

Every builtin format matches what Axolotl 0.19 produces for the same rows, tokenizer and options
(token for token; see docs/data.md for the option names on both sides). The implementations are
ft's own.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from dataclasses import field as dc_field
from typing import Any

from ft.api import ConfigError, DataError

IGNORE_INDEX = -100

ALPACA_PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes "
    "the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)

#: ChatML, for ``chat_template: chatml`` with tokenizers that have no template of their own.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
NAMED_CHAT_TEMPLATES = {"chatml": CHATML_TEMPLATE}

#: Role names mapped when ``roles`` is not set (ShareGPT's human/gpt included).
DEFAULT_ROLE_MAP = {"human": "user", "user": "user", "assistant": "assistant", "gpt": "assistant",
                    "system": "system", "tool": "tool"}

Example = dict[str, list[int]]


@dataclass
class Bad:
    """A malformed row: ``message`` says what is wrong and what was expected."""

    message: str


@dataclass
class FormatOptions:
    """The options every builtin format reads (one dataset's, after defaults are applied)."""

    sequence_len: int = 512
    train_on_inputs: bool = False
    # completion
    field: str = "text"
    # chat_template
    field_messages: str = "messages"
    message_property_mappings: dict[str, str] = dc_field(default_factory=lambda: {"role": "role", "content": "content"})
    roles: dict[str, list[str]] | None = None
    roles_to_train: list[str] = dc_field(default_factory=lambda: ["assistant"])
    train_on_eos: str = "turn"
    eot_tokens: list[str] | None = None
    train_on_eot: str | None = None
    message_field_training: str | None = "train"
    field_system: str = "system"
    chat_template: str | None = None
    # input_output
    field_segments: str = "segments"
    # template (user-defined)
    template: str | None = None
    train_marker: str = "{train}"
    add_eos: bool = True

    @classmethod
    def from_mapping(cls, values: Any) -> FormatOptions:
        """Options from any mapping or object with these attribute names (others ignored)."""
        from ft_data.pipeline import plain

        values = plain(values)
        kwargs = {}
        for fld in fields(cls):
            value = values.get(fld.name) if isinstance(values, dict) else plain(getattr(values, fld.name, None))
            if value is not None:
                kwargs[fld.name] = value
        return cls(**kwargs)

    def __getattr__(self, name: str) -> Any:  # unknown options read as None (third-party formats)
        if name.startswith("__"):
            raise AttributeError(name)
        return None


def _type(value: Any) -> str:
    return "null" if value is None else {"str": "a string", "list": "a list", "dict": "an object",
                                         "bool": "true/false", "int": "a number", "float": "a number"}.get(
        type(value).__name__, type(value).__name__)


def require_str(row: dict[str, Any], key: str, optional: bool = False) -> str:
    """``row[key]`` as a string, or a :class:`DataError` that names the field and what it holds."""
    if key not in row or row[key] is None:
        if optional:
            return ""
        present = ", ".join(sorted(map(str, row))) or "none"
        raise DataError(f"missing the field '{key}' (a string); fields present: {present}")
    value = row[key]
    if not isinstance(value, str):
        raise DataError(f"field '{key}' must be a string, got {_type(value)}")
    return value


def _with_batch(batch: Callable[..., list[Any]], cache_version: int = 1) -> Callable[..., Any]:
    """Make a per-row format callable out of a batched implementation."""

    def one(row: dict[str, Any], tokenizer: Any, options: Any = None) -> Any:
        if not isinstance(options, FormatOptions):
            options = FormatOptions.from_mapping(options or {})
        result = batch([row], tokenizer, options)[0]
        if isinstance(result, Bad):
            raise DataError(result.message)
        return result

    one.batch = batch  # type: ignore[attr-defined]
    one.cache_version = cache_version  # type: ignore[attr-defined]
    one.__name__ = batch.__name__.replace("_batch", "")
    one.__doc__ = batch.__doc__
    return one


def _encode(tokenizer: Any, texts: list[str], add_special_tokens: bool = True) -> list[list[int]]:
    """Token ids of each text, as ``tokenizer(texts)["input_ids"]`` gives them.

    A fast tokenizer's Rust backend is called directly (what transformers does underneath, minus its
    per-call overhead) when the backend has no truncation or padding configured of its own.
    """
    if not texts:
        return []
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and backend.truncation is None and backend.padding is None:
        encode = getattr(backend, "encode_batch_fast", None) or backend.encode_batch
        return [encoding.ids for encoding in encode(texts, add_special_tokens=add_special_tokens)]
    return tokenizer(texts, add_special_tokens=add_special_tokens)["input_ids"]


def _prompt_response(prompts: list[Any], responses: list[str], tokenizer: Any, options: Any,
                     add_eos: bool = True) -> list[Example]:
    """Prompt tokens (masked) + response tokens (trained) + EOS, each part tokenized on its own.

    Tokenizing the two parts separately (rather than the joined text) is what Axolotl does, so
    ``input_ids`` match it at the prompt/response boundary. The prompt keeps the tokenizer's BOS;
    the response drops a leading BOS and gets EOS appended unless it already ends with one.
    An empty part contributes no tokens (and an empty response no EOS either).
    """
    eos, bos = tokenizer.eos_token_id, tokenizer.bos_token_id
    train_inputs = bool(options.train_on_inputs)
    if prompts and not isinstance(prompts[0], str):  # already token ids (PieceEncoder)
        heads = [list(ids) for ids in prompts]
    else:
        encoded = iter(_encode(tokenizer, [p for p in prompts if p]))
        heads = [list(next(encoded)) if p else [] for p in prompts]
    response_ids = iter(_encode(tokenizer, [r for r in responses if r]))
    out = []
    for head, response in zip(heads, responses):
        tail = list(next(response_ids)) if response else []
        if tail and add_eos and eos is not None and tail[-1] != eos:
            tail.append(eos)
        if tail and bos is not None and tail[0] == bos:
            tail = tail[1:]
        labels = (list(head) if train_inputs else [IGNORE_INDEX] * len(head)) + tail
        out.append({"input_ids": head + tail, "labels": labels})
    return out


# -- alpaca ------------------------------------------------------------------------------------


def alpaca_prompt(instruction: str, extra: str) -> str:
    """The Stanford Alpaca prompt (with or without input), ending in ``### Response:\\n``."""
    if extra:
        return ALPACA_PROMPT_WITH_INPUT.format(instruction=instruction, input=extra)
    return ALPACA_PROMPT_NO_INPUT.format(instruction=instruction)


class PieceEncoder:
    """Encodes prompts made of constant template text and user text, tokenizing each constant once.

    Byte-level BPE tokenizers (GPT-2 style regex pre-tokenizer, no normalizer) never merge across a
    boundary where one side is a single newline after punctuation or a letter and the other starts
    with a non-space, or where user text ending in a non-space meets a constant starting with a
    newline. At such boundaries, ``encode(a + b) == encode(a) + encode(b)``, so the Alpaca preamble and
    headers are tokenized once instead of once a row. Used only when the tokenizer qualifies and the
    user text has no leading or trailing whitespace; each batch is also checked against whole-text
    encoding on its first rows, and any difference turns the shortcut off for good.
    """

    _verdicts: dict[int, bool] = {}

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        key = id(getattr(tokenizer, "backend_tokenizer", tokenizer))
        if key not in self._verdicts:
            self._verdicts[key] = self._qualifies(tokenizer)
        self.key = key
        self.constants: dict[str, list[int]] = {}

    @property
    def enabled(self) -> bool:
        return self._verdicts.get(self.key, False)

    @staticmethod
    def _qualifies(tokenizer: Any) -> bool:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            return False
        try:
            spec = json.loads(backend.to_str())
        except Exception:  # noqa: BLE001
            return False
        pre = spec.get("pre_tokenizer") or {}
        if spec.get("normalizer") is not None or pre.get("type") != "ByteLevel" or not pre.get("use_regex", True):
            return False
        if (spec.get("model") or {}).get("type") != "BPE" or (spec.get("model") or {}).get("dropout"):
            return False
        for added in spec.get("added_tokens") or []:
            content = added.get("content", "")
            if any(ch.isspace() for ch in content) or added.get("lstrip") or added.get("rstrip") or added.get("single_word"):
                return False
        probe = "Probe: text\n"
        return tokenizer(probe, add_special_tokens=True)["input_ids"] == tokenizer(probe, add_special_tokens=False)["input_ids"]

    @staticmethod
    def clean(text: str) -> bool:
        """User text that can sit between the constants: non-empty, no outer whitespace."""
        return bool(text) and not text[0].isspace() and not text[-1].isspace()

    def constant(self, text: str) -> list[int]:
        if text not in self.constants:
            self.constants[text] = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return self.constants[text]

    def encode(self, prompts: list[list[tuple[bool, str]]]) -> list[list[int]]:
        """Token ids of each prompt, given as ``(is_constant, text)`` pieces."""
        if not self.enabled:
            return _encode(self.tokenizer, ["".join(t for _, t in p) for p in prompts])
        user = [t for p in prompts for is_constant, t in p if not is_constant]
        user_ids = iter(_encode(self.tokenizer, user, add_special_tokens=False))
        out = []
        for pieces in prompts:
            ids: list[int] = []
            for is_constant, text in pieces:
                ids += self.constant(text) if is_constant else next(user_ids)
            out.append(ids)
        check = prompts[:4]
        if check and _encode(self.tokenizer, ["".join(t for _, t in p) for p in check]) != out[: len(check)]:
            self._verdicts[self.key] = False
            return _encode(self.tokenizer, ["".join(t for _, t in p) for p in prompts])
        return out


_ALPACA_PIECES = {
    True: ALPACA_PROMPT_WITH_INPUT.replace("{instruction}", "\0").replace("{input}", "\0").split("\0"),
    False: ALPACA_PROMPT_NO_INPUT.replace("{instruction}", "\0").split("\0"),
}


def alpaca_pieces(instruction: str, extra: str) -> list[tuple[bool, str]]:
    """The Alpaca prompt as constant and user pieces (whole text when the user text has outer spaces)."""
    if not (PieceEncoder.clean(instruction) and (not extra or PieceEncoder.clean(extra))):
        return [(False, alpaca_prompt(instruction, extra))]
    parts = _ALPACA_PIECES[bool(extra)]
    values = [instruction, extra] if extra else [instruction]
    pieces: list[tuple[bool, str]] = []
    for constant, value in zip(parts, values + [None]):
        pieces.append((True, constant))
        if value is not None:
            pieces.append((False, value))
    return pieces


def alpaca_batch(rows: list[dict[str, Any]], tokenizer: Any, options: Any) -> list[Any]:
    """Alpaca rows ``{"instruction", "input" (optional), "output"}``: the Stanford Alpaca prompt is
    masked, the output and EOS are trained (everything with ``train_on_inputs``)."""
    results: list[Any] = [None] * len(rows)
    prompts, responses, good = [], [], []
    for index, row in enumerate(rows):
        try:
            instruction = require_str(row, "instruction")
            extra = require_str(row, "input", optional=True)
            output = require_str(row, "output")
        except DataError as exc:
            results[index] = Bad(str(exc))
            continue
        prompts.append(alpaca_pieces(instruction, extra))
        responses.append(output)
        good.append(index)
    prompt_ids = PieceEncoder(tokenizer).encode(prompts) if prompts else []
    for index, example in zip(good, _prompt_response(prompt_ids, responses, tokenizer, options)):
        results[index] = example
    return results


# -- user-defined template -----------------------------------------------------------------------


class _Fields(dict):
    def __missing__(self, key: str) -> Any:
        raise DataError(f"missing the field '{key}' that data.template uses; fields present: {', '.join(sorted(self)) or 'none'}")


def split_template(template: str | None, marker: str) -> tuple[str, str]:
    """The template's prompt part and trained part, split at the marker (a ConfigError if absent)."""
    if not template:
        raise ConfigError("format 'template' needs data.template, e.g. 'Q: {question}\\nA: {train}{answer}'")
    if template.count(marker) != 1:
        raise ConfigError(f"data.template must contain the marker {marker!r} exactly once (where training starts); got {template!r}")
    before, after = template.split(marker)
    return before, after


def template_batch(rows: list[dict[str, Any]], tokenizer: Any, options: Any) -> list[Any]:
    """Rows rendered with a user format string over named fields (``{question}``); text before the
    marker (``{train}`` by default) is masked, text after it and EOS are trained."""
    before, after = split_template(options.template, options.train_marker or "{train}")
    results: list[Any] = [None] * len(rows)
    prompts, responses, good = [], [], []
    for index, row in enumerate(rows):
        try:
            values = _Fields({k: ("" if v is None else v) for k, v in row.items()})
            prompts.append(before.format_map(values))
            responses.append(after.format_map(values))
        except DataError as exc:
            results[index] = Bad(str(exc))
            continue
        except (ValueError, IndexError, AttributeError, KeyError) as exc:
            raise ConfigError(f"data.template={options.template!r} is not a valid format string: {exc}") from exc
        good.append(index)
    add_eos = options.add_eos is not False
    for index, example in zip(good, _prompt_response(prompts, responses, tokenizer, options, add_eos=add_eos)):
        results[index] = example
    return results


# -- completion ----------------------------------------------------------------------------------


def completion_batch(rows: list[dict[str, Any]], tokenizer: Any, options: Any) -> list[Any]:
    """Raw text (field ``text`` by default), every token trained, EOS appended. A document longer
    than ``sequence_len`` becomes several examples of ``sequence_len`` tokens (never truncated)."""
    key = options.field or "text"
    chunk = int(options.sequence_len or 0)
    results: list[Any] = [None] * len(rows)
    texts, good = [], []
    for index, row in enumerate(rows):
        try:
            texts.append(require_str(row, key))
        except DataError as exc:
            results[index] = Bad(str(exc))
            continue
        good.append(index)
    eos = tokenizer.eos_token_id
    encoded = iter(_encode(tokenizer, [t for t in texts if t]))
    for index, text in zip(good, texts):
        ids = list(next(encoded)) if text else []
        if ids and eos is not None and ids[-1] != eos:
            ids.append(eos)
        if chunk <= 0 or len(ids) <= chunk:
            results[index] = [{"input_ids": ids, "labels": list(ids)}]
        else:
            results[index] = [{"input_ids": ids[i:i + chunk], "labels": ids[i:i + chunk]}
                              for i in range(0, len(ids), chunk)]
    return results


# -- input_output --------------------------------------------------------------------------------


def input_output_batch(rows: list[dict[str, Any]], tokenizer: Any, options: Any) -> list[Any]:
    """``{"segments": [{"text", "label": true/false}, ...]}``: segments tokenized one by one without
    special tokens and concatenated (no template); ``label: false`` segments are masked."""
    key = options.field_segments or "segments"
    train_inputs = bool(options.train_on_inputs)
    results: list[Any] = [None] * len(rows)
    texts: list[str] = []
    plans: list[tuple[int, list[bool]]] = []
    for index, row in enumerate(rows):
        segments = row.get(key)
        if not isinstance(segments, list) or not segments:
            what = "is missing" if segments is None else ("is empty" if segments == [] else f"is {_type(segments)}")
            results[index] = Bad(f"field '{key}' {what}; expected a list of {{\"text\": ..., \"label\": true/false}}")
            continue
        flags, problem = [], None
        for number, segment in enumerate(segments, start=1):
            if not isinstance(segment, dict) or not isinstance(segment.get("text"), str):
                problem = f"segment {number} must be an object with a string 'text'"
            elif not isinstance(segment.get("label"), bool):
                problem = f"segment {number} needs 'label': true or false, got {_type(segment.get('label'))}"
            if problem:
                break
            flags.append(segment["label"])
        if problem:
            results[index] = Bad(problem)
            continue
        texts += [segment["text"] for segment in segments]
        plans.append((index, flags))
    encoded = iter(_encode(tokenizer, texts, add_special_tokens=False))
    for index, flags in plans:
        input_ids: list[int] = []
        labels: list[int] = []
        for flag in flags:
            ids = list(next(encoded))
            input_ids += ids
            labels += ids if (flag or train_inputs) else [IGNORE_INDEX] * len(ids)
        results[index] = {"input_ids": input_ids, "labels": labels}
    return results


# -- pre-tokenized -------------------------------------------------------------------------------


def _int_list(value: Any, key: str) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise DataError(f"field '{key}' must be a list of integers, got {_type(value)}")
    return value


def pretokenized_batch(rows: list[dict[str, Any]], tokenizer: Any, options: Any) -> list[Any]:
    """Rows that are already tokens: ``input_ids``, optional ``labels`` (default: all trained) and
    ``attention_mask``; lengths and token ids are checked against the tokenizer."""
    vocab = len(tokenizer)
    results: list[Any] = []
    for row in rows:
        try:
            if "input_ids" not in row:
                raise DataError(f"missing the field 'input_ids' (a list of token ids); fields present: {', '.join(sorted(row)) or 'none'}")
            ids = _int_list(row["input_ids"], "input_ids")
            if not ids:
                raise DataError("field 'input_ids' is empty")
            bad = next((t for t in ids if not 0 <= t < vocab), None)
            if bad is not None:
                raise DataError(f"token id {bad} in 'input_ids' is outside the tokenizer's vocabulary (0..{vocab - 1})")
            labels = list(ids) if row.get("labels") is None else _int_list(row["labels"], "labels")
            if len(labels) != len(ids):
                raise DataError(f"'labels' has {len(labels)} entries but 'input_ids' has {len(ids)}")
            bad = next((t for t in labels if t != IGNORE_INDEX and not 0 <= t < vocab), None)
            if bad is not None:
                raise DataError(f"label {bad} is neither -100 nor a token id of the vocabulary")
            mask = row.get("attention_mask")
            if mask is not None:
                mask = _int_list(mask, "attention_mask")
                if len(mask) != len(ids) or any(m not in (0, 1) for m in mask):
                    raise DataError("'attention_mask' must be 0/1 values, as many as 'input_ids'")
                if not all(mask):
                    raise DataError("'attention_mask' has zeros: give rows without padding (ft pads batches itself)")
            if options.train_on_inputs:
                labels = list(ids)
            results.append({"input_ids": list(ids), "labels": list(labels)})
        except DataError as exc:
            results.append(Bad(str(exc)))
    return results


# -- chat_template -------------------------------------------------------------------------------


def resolve_chat_template(tokenizer: Any, option: str | None) -> str:
    """The Jinja template to render with: the tokenizer's, a named one, or the option's own text."""
    if option in (None, "", "tokenizer_default"):
        template = getattr(tokenizer, "chat_template", None)
        if isinstance(template, dict):
            template = template.get("default")
        if not template:
            raise ConfigError("the tokenizer has no chat template: set data.chat_template=chatml, or a Jinja template string")
        return template
    if option in NAMED_CHAT_TEMPLATES:
        return NAMED_CHAT_TEMPLATES[option]
    if "{{" in option or "{%" in option:
        return option
    raise ConfigError(f"data.chat_template={option!r}: expected 'tokenizer_default', one of "
                      f"{', '.join(NAMED_CHAT_TEMPLATES)}, or a Jinja template string")


class ChatRenderer:
    """Renders conversations with a chat template exactly as ``tokenizer.apply_chat_template``
    (``tokenize=False``) does, but without its per-call overhead when that is proven identical."""

    def __init__(self, tokenizer: Any, template: str) -> None:
        self.tokenizer = tokenizer
        self.template = template
        self._compiled: Any = None
        self._checked = False
        try:
            from transformers.utils.chat_template_utils import _compile_jinja_template

            self._compiled = _compile_jinja_template(template)
            self._kwargs = {k: str(v) for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)}
        except Exception:  # noqa: BLE001 - private helper moved: use the public call
            self._compiled = None

    def _reference(self, turns: list[dict[str, Any]]) -> str:
        return self.tokenizer.apply_chat_template(turns, tokenize=False, chat_template=self.template)

    def __call__(self, turns: list[dict[str, Any]]) -> str:
        if self._compiled is None:
            return self._reference(turns)
        fast = self._compiled.render(messages=turns, tools=None, documents=None,
                                     add_generation_prompt=False, **self._kwargs)
        if not self._checked:
            self._checked = True
            if fast != self._reference(turns):
                self._compiled = None
                return self._reference(turns)
        return fast


@dataclass
class _ChatPlan:
    index: int
    turns: list[dict[str, Any]]
    trained: list[bool]
    text: str = ""
    spans: dict[int, tuple[int, int] | None] = dc_field(default_factory=dict)


_PLACEHOLDER = re.compile("\ue000(\\d+)\ue001")
#: Two stand-ins with different first and last characters: a turn's content differs from at least
#: one of them at each end, so diffing both renders finds the content's exact place.
_SENTINELS = ("[[dummy_message]]", "zzdummymessagezz")


def _diff_span(full: str, other: str) -> tuple[int, int]:
    limit = min(len(full), len(other))
    start = 0
    while start < limit and full[start] == other[start]:
        start += 1
    suffix = 0
    while suffix < limit - start and full[len(full) - 1 - suffix] == other[len(other) - 1 - suffix]:
        suffix += 1
    return start, len(full) - suffix


class ChatTemplateFormat:
    """Conversations rendered with a chat template; see :func:`chat_template_batch`."""

    def __init__(self, tokenizer: Any, options: Any) -> None:
        self.options = options
        self.render = ChatRenderer(tokenizer, resolve_chat_template(tokenizer, options.chat_template))
        self.role_map = ({source: target for target, sources in options.roles.items() for source in sources}
                         if options.roles else dict(DEFAULT_ROLE_MAP))
        self.known_roles = set(self.role_map.values()) | {"system", "user", "assistant", "tool"}
        self.roles_to_train = {self.role_map.get(r, r) for r in (options.roles_to_train or [])}
        self.known_roles |= self.roles_to_train
        mappings = dict(options.message_property_mappings or {})
        self.role_key = mappings.pop("role", "role")
        self.content_key = mappings.pop("content", "content")
        self.extra_mappings = mappings
        self.mode = options.train_on_eos or "turn"
        if self.mode not in ("all", "turn", "last", "none"):
            raise ConfigError(f"train_on_eos={self.mode!r}: expected one of all, turn, last, none")
        self.eos_id = tokenizer.eos_token_id
        # End-of-turn tokens (eot_tokens: a template's own turn terminator, e.g. <end_of_turn>), trained per
        # train_on_eot (default: train_on_eos); EOS is trained per train_on_eos as well, as in Axolotl.
        self.eot_mode = options.train_on_eot or self.mode
        if self.eot_mode not in ("all", "turn", "last", "none"):
            raise ConfigError(f"train_on_eot={self.eot_mode!r}: expected one of all, turn, last, none")
        self.eot_ids = {self.eos_id}
        if options.eot_tokens:
            vocab = tokenizer.get_vocab()
            missing = [t for t in options.eot_tokens if t not in vocab]
            if missing:
                raise ConfigError(f"eot_tokens: {', '.join(map(repr, missing))} not in the tokenizer's vocabulary")
            self.eot_ids = {vocab[t] for t in options.eot_tokens}

    def plan(self, index: int, row: dict[str, Any]) -> _ChatPlan:
        """Check one row and turn its messages into template turns with their training flags."""
        opts = self.options
        key = opts.field_messages or "messages"
        messages = row.get(key)
        if isinstance(messages, str):
            try:
                messages = json.loads(messages)
            except json.JSONDecodeError as exc:
                raise DataError(f"field '{key}' is a string that is not JSON ({exc.msg})") from exc
        if messages is None:
            raise DataError(f"missing the field '{key}' (a list of messages); fields present: {', '.join(sorted(row)) or 'none'}")
        if not isinstance(messages, list):
            raise DataError(f"field '{key}' must be a list of messages, got {_type(messages)}")
        if not messages:
            raise DataError(f"empty conversation: field '{key}' has no messages")
        turns: list[dict[str, Any]] = []
        flags: list[bool | None] = []
        for number, message in enumerate(messages, start=1):
            if not isinstance(message, dict):
                raise DataError(f"message {number} must be an object with '{self.role_key}' and '{self.content_key}', got {_type(message)}")
            role = message.get(self.role_key)
            if not isinstance(role, str):
                raise DataError(f"message {number} needs a string '{self.role_key}', got {_type(role)}")
            mapped = self.role_map.get(role, role)
            if mapped not in self.known_roles:
                raise DataError(f"message {number} has an unknown role {role!r}; known roles: "
                                f"{', '.join(sorted(set(self.role_map) | self.known_roles))} "
                                f"(map others with data.roles, e.g. {{assistant: [{role}]}})")
            content = message.get(self.content_key)
            if isinstance(content, list):
                parts = []
                for part in content:
                    if isinstance(part, dict) and ("train" in part or "weight" in part):
                        raise DataError(f"message {number}: per-part 'train'/'weight' flags are not supported; split the message instead")
                    parts.append(part.get("text") or part.get("content") or part.get("value") or "" if isinstance(part, dict) else "")
                content = "".join(parts)
            if not isinstance(content, str):
                raise DataError(f"message {number} needs a string '{self.content_key}', got {_type(content)}")
            turn = {k: v for k, v in message.items()
                    if k not in (self.role_key, self.content_key, opts.message_field_training) and v is not None
                    and k not in self.extra_mappings.values()}
            for target, source in self.extra_mappings.items():
                if message.get(source) is not None:
                    turn[target] = message[source]
            turn["role"] = mapped
            turn["content"] = content
            flag = message.get(opts.message_field_training) if opts.message_field_training else None
            if flag is not None and not isinstance(flag, bool):
                raise DataError(f"message {number}: '{opts.message_field_training}' must be true or false, got {_type(flag)}")
            turns.append(turn)
            flags.append(flag)
        system = row.get(opts.field_system) if opts.field_system else None
        if system is not None and turns[0]["role"] != "system":
            if not isinstance(system, str):
                raise DataError(f"field '{opts.field_system}' must be a string, got {_type(system)}")
            turns.insert(0, {"role": "system", "content": system})
            flags.insert(0, None)
        trained = [flag if flag is not None else (bool(opts.train_on_inputs) or turn["role"] in self.roles_to_train)
                   for turn, flag in zip(turns, flags)]
        return _ChatPlan(index=index, turns=turns, trained=trained)

    def locate(self, plan: _ChatPlan) -> None:
        """Render the conversation and find each turn's content span (characters) in the text."""
        turns = plan.turns
        plan.text = self.render(turns)
        wanted = [i for i, trained in enumerate(plan.trained) if trained or self.mode == "all"]
        if not wanted:
            return
        stand_in = [dict(t, content=f"\ue000{i}\ue001") if t["content"] else t for i, t in enumerate(turns)]
        skeleton = self.render(stand_in)
        pieces: list[Any] = []
        position = cursor = 0
        spans: dict[int, tuple[int, int]] = {}
        placed = True
        for match in _PLACEHOLDER.finditer(skeleton):
            number = int(match.group(1))
            if number in spans or number >= len(turns):
                placed = False
                break
            pieces.append(skeleton[cursor:match.start()])
            position += match.start() - cursor
            content = turns[number]["content"]
            spans[number] = (position, position + len(content))
            pieces.append(content)
            position += len(content)
            cursor = match.end()
        if placed:
            pieces.append(skeleton[cursor:])
            if "".join(pieces) == plan.text:
                plan.spans = {i: spans.get(i) for i in wanted}
                return
        # The template changes content (trims it, or branches on it): diff renders turn by turn.
        for i in wanted:
            if not turns[i]["content"]:
                plan.spans[i] = None
                continue
            found = [_diff_span(plan.text, self.render(turns[:i] + [{**turns[i], "content": s}] + turns[i + 1:]))
                     for s in _SENTINELS]
            start, end = min(s for s, _ in found), max(e for _, e in found)
            plan.spans[i] = (start, end) if end > start else None

    def labels(self, plan: _ChatPlan, input_ids: list[int], offsets: list[tuple[int, int]]) -> list[int]:
        """Labels: the content of trained turns, plus the end-of-turn (EOS) token per train_on_eos."""
        starts = [s for s, _ in offsets]
        ends = [e for _, e in offsets]
        labels = [IGNORE_INDEX] * len(input_ids)
        ends_of_turn = ((self.eot_ids, self.eot_mode), ({self.eos_id}, self.mode))
        last = [-1, -1]
        for i in sorted(plan.spans):
            span = plan.spans[i]
            first, stop = -1, -1
            if span is not None:
                first, stop = bisect.bisect_right(ends, span[0]), bisect.bisect_left(starts, span[1])
                if first >= len(ends) or stop <= first:
                    first, stop = -1, -1
            if plan.trained[i] and first != -1:
                labels[first:stop] = input_ids[first:stop]
            for kind, (ids, mode) in enumerate(ends_of_turn):
                at = next((j for j in range(stop, len(input_ids)) if input_ids[j] in ids), -1)
                if at != -1 and abs(at - stop) <= 3:
                    last[kind] = at
                    if mode == "all" or (mode == "turn" and plan.trained[i]):
                        labels[at] = input_ids[at]
        for kind, (_, mode) in enumerate(ends_of_turn):
            if mode == "last" and last[kind] != -1:
                labels[last[kind]] = input_ids[last[kind]]
        return labels

    def batch(self, rows: list[dict[str, Any]], tokenizer: Any) -> list[Any]:
        results: list[Any] = [None] * len(rows)
        plans = []
        for index, row in enumerate(rows):
            try:
                plan = self.plan(index, row)
            except DataError as exc:
                results[index] = Bad(str(exc))
                continue
            self.locate(plan)
            plans.append(plan)
        if plans:
            encoded = tokenizer([p.text for p in plans], add_special_tokens=False, return_offsets_mapping=True)
            for plan, ids, offsets in zip(plans, encoded["input_ids"], encoded["offset_mapping"]):
                ids = list(ids)
                results[plan.index] = {"input_ids": ids, "labels": self.labels(plan, ids, offsets)}
        return results


_CHAT_CACHE: dict[int, tuple[Any, Any, ChatTemplateFormat]] = {}


def chat_template_batch(rows: list[dict[str, Any]], tokenizer: Any, options: Any) -> list[Any]:
    """Conversations (``messages`` of ``{"role", "content"}``) rendered with the chat template.

    Trained: the content of turns whose role is in ``roles_to_train`` (or whose per-message
    ``train`` flag is true, or every turn with ``train_on_inputs``), and the end-of-turn token per
    ``train_on_eos``: ``turn`` (after each trained turn), ``all`` (after every turn), ``last`` (after
    the last trained turn only) or ``none``. The template's scaffolding (role headers, BOS, the
    default system prompt) is never trained.
    """
    cached = _CHAT_CACHE.get(id(options))
    if cached is None or cached[0] is not tokenizer or cached[1] is not options:
        _CHAT_CACHE.clear()
        cached = (tokenizer, options, ChatTemplateFormat(tokenizer, options))
        _CHAT_CACHE[id(options)] = cached
    return cached[2].batch(rows, tokenizer)


format_alpaca = _with_batch(alpaca_batch)
format_chat_template = _with_batch(chat_template_batch)
format_completion = _with_batch(completion_batch)
format_input_output = _with_batch(input_output_batch)
format_pretokenized = _with_batch(pretokenized_batch)
format_template = _with_batch(template_batch)

BUILTIN_FORMATS: dict[str, Callable[..., Any]] = {
    "alpaca": format_alpaca,
    "chat_template": format_chat_template,
    "completion": format_completion,
    "input_output": format_input_output,
    "pretokenized": format_pretokenized,
    "template": format_template,
}
