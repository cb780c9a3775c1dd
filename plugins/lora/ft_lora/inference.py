"""Loading what ft-lora saved for inference (``ft generate``, ``ft chat``, ``ft eval``): the adapter on its base,
quantised the way it was trained (a QLoRA base is loaded in 4 bits again) unless asked otherwise.

:data:`ADAPTER_RECORD` is the JSON file ft-lora writes next to the PEFT files: ``{"base_model": ...,
"base_quantization": <a transformers quantization config as a dict, or null>, ...}``.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from ft.api import FtUserError

ADAPTER_RECORD = "ft_adapter.json"


def base_for_adapter(adapter_folder: Path, run_cfg: dict[str, Any], base_arg: str | None) -> str:
    """The base model an adapter applies to: ``--base``, else the run's model, else the adapter's record."""
    from ft_model.api import resolve_model_path

    recorded = json.loads((adapter_folder / "adapter_config.json").read_text()).get("base_model_name_or_path")
    for name in (base_arg, (run_cfg.get("model") or {}).get("name_or_path"), recorded):
        if name:
            return resolve_model_path(str(name))
    raise FtUserError(f"{adapter_folder}: cannot tell which base model the adapter belongs to; pass --base")


def quiet_adapter_libraries() -> None:
    """PEFT imports bitsandbytes, which warns (on AVX512-BF16 CPUs) that the optional Hub-downloading
    ``kernels`` package is absent, and calls a transformers method deprecated for v6: noise here."""
    import logging
    import warnings

    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


def base_quantization(adapter_folder: Path) -> dict[str, Any] | None:
    """How the base was quantised while the adapter trained, from :data:`ADAPTER_RECORD` (or ``None``)."""
    record = adapter_folder / ADAPTER_RECORD
    if not record.is_file():
        return None
    return json.loads(record.read_text()).get("base_quantization") or None


def quantization_config(quantization: dict[str, Any]) -> Any:
    """A ``BitsAndBytesConfig`` from its saved dict (private and derived keys dropped)."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(**{k: v for k, v in quantization.items() if not k.startswith("_") and k != "quant_method"})


def load_adapter_for_inference(folder: Path, run_config: dict[str, Any], options: dict[str, Any]) -> Any:
    """``(model, tokenizer folder, description)`` for a PEFT adapter folder, or ``None`` for another folder."""
    if not (folder / "adapter_config.json").is_file() or (folder / "config.json").is_file():
        return None
    quiet_adapter_libraries()
    try:
        from peft import PeftModel
    except ImportError as exc:
        raise FtUserError(f"{folder} holds a PEFT adapter; loading it needs peft: pip install peft") from exc
    from transformers import AutoModelForCausalLM

    kwargs = dict(options.get("load_kwargs") or {})
    base = base_for_adapter(folder, run_config, options.get("base"))
    description = f"base {base} + adapter {folder}"
    quantization = None if options.get("full_precision_base") else base_quantization(folder)
    if quantization:
        if importlib.util.find_spec("bitsandbytes") is None:
            raise FtUserError(f"{folder} was trained on a quantised base; loading it that way needs bitsandbytes: "
                              f"pip install bitsandbytes (or pass --full-precision-base)")
        kwargs["quantization_config"] = quantization_config(quantization)
        description += " (base quantised as it was trained; --full-precision-base to load it unquantised)"
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, **kwargs), str(folder))
    tokenizer_folder = folder if (folder / "tokenizer_config.json").is_file() else Path(base)
    return model, tokenizer_folder, description
