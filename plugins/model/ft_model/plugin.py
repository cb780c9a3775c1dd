"""Builtin plugin: load the tokenizer and the model (hub id, local folder, or the embedded default).

Offline-first: a hub id is looked up in the local Hugging Face cache when ``HF_HUB_OFFLINE`` is set
(or no network is reachable); ``trust_remote_code`` stays off unless the config turns it on.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from ft.api import FtUserError, PluginInfo, RunContext, hookimpl

log = logging.getLogger("ft")

FT_PLUGIN = PluginInfo(
    name="model", contract="3.0",
    description="Loads tokenizers and causal LMs (hub id, local folder, builtin:smollm2-135m-instruct)",
    always_active=True,
)

BUILTIN_MODELS = {"builtin:smollm2-135m-instruct"}
class ModelError(FtUserError):
    """The model or tokenizer named in the config cannot be loaded."""


#: Weight files a model folder must hold (one of them).
WEIGHT_FILES = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.gguf", "*.pt", "*.pth")


def resolve_model_path(name_or_path: str, weights: bool = True) -> str:
    """Map ``builtin:`` names to their local cache and check that local paths exist (and, for a
    model rather than a tokenizer, hold weights)."""
    if name_or_path in BUILTIN_MODELS:
        from ft_model.smollm2 import ensure_smollm2

        try:
            return str(ensure_smollm2())
        except (ImportError, FileNotFoundError) as exc:
            raise ModelError(str(exc)) from exc
    if name_or_path.startswith("builtin:"):
        raise ModelError(
            f"model.name_or_path={name_or_path!r}: unknown builtin model; known: {', '.join(sorted(BUILTIN_MODELS))}"
        )
    from ft.api import path_exists

    try:
        exists = path_exists(name_or_path, "model.name_or_path")
    except FtUserError as exc:
        raise ModelError(str(exc)) from exc
    if name_or_path.startswith((".", "/", "~")) or exists:
        path = Path(name_or_path).expanduser()
        if not exists or not path.is_dir():
            raise ModelError(f"model.name_or_path={name_or_path!r}: no such folder")
        if not (path / "config.json").is_file():
            raise ModelError(f"model.name_or_path={name_or_path!r}: folder has no config.json (not a Hugging Face model folder)")
        if weights and not any(next(path.glob(pattern), None) for pattern in WEIGHT_FILES):
            raise ModelError(f"model.name_or_path={name_or_path!r}: folder has a config.json but no weights "
                             f"({', '.join(WEIGHT_FILES)}); is the download or copy complete?")
        return str(path)
    return name_or_path


def local_model_folder(name_or_path: str) -> Path | None:
    """The local folder a model name means, without converting or downloading anything: a folder that
    exists, or a builtin model already converted into the cache; ``None`` otherwise (a hub id...)."""
    if name_or_path in BUILTIN_MODELS:
        from ft_model.smollm2 import is_complete, smollm2_folder

        folder = smollm2_folder()
        return folder if is_complete(folder) else None
    try:
        path = Path(name_or_path).expanduser()
        return path if path.is_dir() else None
    except (OSError, ValueError):
        return None


def _offline() -> bool:
    import os

    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes")


def from_pretrained_offline_first(loader: Any, name: str, **kwargs: Any) -> Any:
    """Load from local files (a folder or the Hugging Face cache) first; reach the hub only when
    that fails and ``HF_HUB_OFFLINE`` is not set."""
    if Path(name).expanduser().is_dir():
        return loader.from_pretrained(name, **kwargs)
    try:
        return loader.from_pretrained(name, local_files_only=True, **kwargs)
    except (OSError, ValueError):
        if _offline():
            raise
    return loader.from_pretrained(name, **kwargs)


def _load_error(what: str, name: str, exc: Exception) -> ModelError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ModelError(
        f"cannot load the {what} {name!r}: {first}. Use a local folder, or a hub id already in the "
        f"Hugging Face cache (ft does not download at run time when HF_HUB_OFFLINE=1)"
    )


@hookimpl
def config_schemas() -> dict[str, type]:
    from ft_model.schema import SCHEMAS

    return dict(SCHEMAS)


@hookimpl
def validate_config(cfg: Any, choices: dict[str, str | None]) -> None:
    """Check model paths before anything loads: a local folder must exist and hold a model; a hub id
    must be in the local cache when ``HF_HUB_OFFLINE`` is set."""
    from ft.api import ConfigError, did_you_mean
    from ft_model.schema import ATTENTION_IMPLEMENTATIONS

    attention = cfg.model.attn_implementation
    if attention and attention not in ATTENTION_IMPLEMENTATIONS and "/" not in attention:
        raise ConfigError(f"model.attn_implementation={attention!r}: unknown attention"
                          f"{did_you_mean(attention, ATTENTION_IMPLEMENTATIONS)}; expected one of "
                          f"{', '.join(ATTENTION_IMPLEMENTATIONS)}, or a hub kernel 'org/repo'")
    special = {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"}
    if cfg.model.unfrozen_parameters and choices.get("adapter"):
        raise ConfigError(f"model.unfrozen_parameters trains part of the base model; with adapter={choices['adapter']} "
                          f"the adapter is what trains: use one or the other")
    for pattern in cfg.model.unfrozen_parameters or []:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"model.unfrozen_parameters: {pattern!r} is not a regular expression ({exc})") from None
    for name in cfg.model.special_tokens or {}:
        if name not in special:
            raise ConfigError(f"model.special_tokens.{name}: not a special token{did_you_mean(name, special)}; "
                              f"expected {', '.join(sorted(special))}")
    for key in ("name_or_path", "tokenizer"):
        name = getattr(cfg.model, key)
        if not name or name in BUILTIN_MODELS:
            continue
        try:
            resolved = resolve_model_path(name, weights=key == "name_or_path")
        except ModelError as exc:
            raise ConfigError(str(exc).replace("model.name_or_path", f"model.{key}")) from exc
        if resolved == name and not Path(name).expanduser().exists() and _offline() and not _in_hub_cache(name):
            raise ConfigError(
                f"model.{key}={name!r}: not a local folder and not in the Hugging Face cache, and "
                f"HF_HUB_OFFLINE=1 forbids downloading; point it at a local model folder"
            )


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers depends on it
        return True
    try:
        found = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # noqa: BLE001 - an invalid repo id is simply not cached
        return False
    return isinstance(found, str)


@hookimpl(trylast=True)
def load_tokenizer(ctx: RunContext) -> Any:
    from transformers import AutoTokenizer

    model_cfg = ctx.cfg.model
    name = resolve_model_path(model_cfg.tokenizer or model_cfg.name_or_path, weights=False)
    try:
        tokenizer = from_pretrained_offline_first(
            AutoTokenizer, name, revision=model_cfg.revision, trust_remote_code=model_cfg.trust_remote_code
        )
    except (OSError, ValueError) as exc:
        raise _load_error("tokenizer", name, exc) from exc
    if model_cfg.chat_template:
        tokenizer.chat_template = model_cfg.chat_template
    if model_cfg.special_tokens:  # new ones join the vocabulary; load_model grows the embeddings to match
        tokenizer.add_special_tokens(dict(model_cfg.special_tokens))
    if model_cfg.added_tokens:
        tokenizer.add_tokens([str(token) for token in model_cfg.added_tokens])
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def torch_dtype(name: str) -> Any:
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(name, "auto")


@hookimpl(trylast=True)
def load_model(ctx: RunContext, load_kwargs: dict[str, Any]) -> Any:
    from transformers import AutoModelForCausalLM

    model_cfg = ctx.cfg.model
    name = resolve_model_path(model_cfg.name_or_path)
    kwargs: dict[str, Any] = {
        "revision": model_cfg.revision,
        "trust_remote_code": model_cfg.trust_remote_code,
        "dtype": torch_dtype(model_cfg.dtype),
    }
    if model_cfg.attn_implementation:
        kwargs["attn_implementation"] = model_cfg.attn_implementation
    kwargs.update(model_cfg.config_overrides or {})  # from_pretrained sets them on the model's config
    kwargs.update(load_kwargs)
    try:
        model = from_pretrained_offline_first(AutoModelForCausalLM, name, **kwargs)
    except (OSError, ValueError) as exc:
        raise _load_error("model", name, exc) from exc
    tokenizer = ctx.tokenizer
    multiple = model_cfg.pad_vocab_to_multiple_of or 1
    rows = -(-len(tokenizer) // multiple) * multiple if tokenizer is not None else 0
    if rows > model.get_input_embeddings().num_embeddings:  # new tokens (special_tokens, added_tokens), padding
        model.resize_token_embeddings(rows)
    if tokenizer is not None and model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if getattr(model, "generation_config", None) is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id if tokenizer is not None else None
    return model


@hookimpl
def post_model_load(ctx: RunContext) -> None:
    """``model.unfrozen_parameters``: train only the parameters whose names match (a full fine-tune of part)."""
    from ft.api import ConfigError

    patterns = [re.compile(p) for p in ctx.cfg.model.unfrozen_parameters or []]
    if not patterns or ctx.model is None:
        return
    for name, parameter in ctx.model.named_parameters():
        parameter.requires_grad_(any(p.match(name) for p in patterns))
    if not any(parameter.requires_grad for parameter in ctx.model.parameters()):
        raise ConfigError(f"model.unfrozen_parameters={ctx.cfg.model.unfrozen_parameters}: no parameter name matches "
                          f"(re.match from the start), so nothing would train")


@hookimpl(trylast=True)
def load_reference_model(ctx: RunContext, role: str, source: str | None, load_kwargs: dict[str, Any] | None) -> Any:
    """A frozen copy of the model as it starts training (``source=None``), or the model ``source``
    names (a folder or a cached hub id), loaded like the trained model: same dtype, offline-first."""
    if source is None and any(p.numel() == 0 for p in ctx.model.parameters()):
        # Weights partitioned across ranks (ZeRO-3 loads them that way): a copy would copy empty shards. The
        # model as it starts training is the checkpoint it was loaded from, loaded again (partitioned too).
        log.info("%s model: loading %s again (the trained model's weights are partitioned across ranks)", role,
                 ctx.cfg.model.name_or_path)
        source = ctx.cfg.model.name_or_path
    if source is None:
        import copy

        reference = copy.deepcopy(ctx.model)
    else:
        from transformers import AutoModelForCausalLM

        name = resolve_model_path(source)
        try:
            kwargs = {"dtype": torch_dtype(ctx.cfg.model.dtype), "trust_remote_code": ctx.cfg.model.trust_remote_code,
                      **(load_kwargs or {})}
            reference = from_pretrained_offline_first(AutoModelForCausalLM, name, **kwargs)
        except (OSError, ValueError) as exc:
            raise _load_error(f"{role} model", name, exc) from exc
    reference.eval()
    reference.requires_grad_(False)
    ctx.reference_model = reference
    return reference


@hookimpl(optionalhook=True)
def axolotl_keys() -> dict[str, Any]:
    """Axolotl's model and tokenizer keys (ft-axolotl): ``ft_model/axolotl.py``."""
    from ft_model.axolotl import AXOLOTL_KEYS

    return AXOLOTL_KEYS
