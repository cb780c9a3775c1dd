"""``ft merge RUN_DIR``: fold a run's LoRA adapter into its base and save a standalone model.

The output is a plain Hugging Face folder (``config.json``, ``model.safetensors``, tokenizer,
generation config) that ``AutoModelForCausalLM.from_pretrained`` loads without PEFT or ft.

QLoRA (or any adapter trained on a 4-bit/8-bit base): the adapter learned to correct the
*quantised* base, so by default it is merged into that base de-quantised (the exact weights the
4-bit layers computed with, in float32); the merged model then reproduces the trained model.
``--original-base`` merges into the original full-precision weights instead; its outputs differ
from the trained model by the rounding error of the quantisation.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from ft.api import FtUserError
from ft_lora.inference import ADAPTER_RECORD as FT_ADAPTER_FILE
from ft_lora.inference import quantization_config
from ft_outputs.card import write_model_card

DTYPES = ("float32", "bfloat16", "float16")


class MergeError(FtUserError):
    """The run folder has no adapter to merge, or the output folder is taken."""


def merge_command() -> Any:
    from ft.api import Command

    return Command(
        name="merge",
        help="merge RUN_DIR's LoRA adapter into its base: a standalone safetensors model",
        run=run_merge,
        add_arguments=add_arguments,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="an ft run folder (its model/ holds the adapter) or an adapter folder")
    parser.add_argument("--output", "-o", help="where to write the merged model (default: RUN_DIR/merged)")
    parser.add_argument("--base", help="the base model folder or hub id (default: the run's model)")
    parser.add_argument("--dtype", choices=DTYPES, default=None,
                        help="dtype of the saved weights (default: the run's model.dtype, float32 for QLoRA)")
    parser.add_argument("--original-base", action="store_true",
                        help="QLoRA: merge into the original full-precision base instead of the de-quantised one")


def find_adapter(path: Path) -> Path:
    """The adapter folder of a run folder (``model/``) or the folder itself."""
    for candidate in (path, path / "model"):
        if (candidate / "adapter_config.json").is_file():
            return candidate
    if any((folder / "config.json").is_file() for folder in (path, path / "model")):
        raise MergeError(f"{path} holds a full model, not an adapter: there is nothing to merge (load it directly)")
    raise MergeError(f"{path}: no LoRA adapter found (expected adapter_config.json in it or in its model/ subfolder)")


def run_config(adapter_dir: Path) -> dict[str, Any]:
    """The run's resolved ``config.yaml`` when ``adapter_dir`` is a run's ``model/``, else an empty dict."""
    import yaml

    config = adapter_dir.parent / "config.yaml"
    if adapter_dir.name == "model" and config.is_file():
        return yaml.safe_load(config.read_text()) or {}
    return {}


def describe_base(adapter_dir: Path, base_arg: str | None) -> tuple[str, dict[str, Any] | None, str]:
    """The base model to merge into, how it was quantised while training, and the run's dtype."""
    from ft_model.api import resolve_model_path

    record: dict[str, Any] = {}
    if (adapter_dir / FT_ADAPTER_FILE).is_file():
        record = json.loads((adapter_dir / FT_ADAPTER_FILE).read_text())
    cfg = run_config(adapter_dir)
    dtype = record.get("base_dtype") or (cfg.get("model") or {}).get("dtype") or "float32"
    if base_arg:
        return resolve_model_path(base_arg), record.get("base_quantization"), dtype
    candidates = [
        (cfg.get("model") or {}).get("name_or_path"),
        record.get("base_model"),
        json.loads((adapter_dir / "adapter_config.json").read_text()).get("base_model_name_or_path"),
    ]
    for name in candidates:
        if name:
            return resolve_model_path(str(name)), record.get("base_quantization"), dtype
    raise MergeError(f"{adapter_dir}: cannot tell which base model the adapter belongs to; pass --base")


def quantization_summary(quantization: dict[str, Any]) -> str:
    """``4-bit nf4 (double quantisation)`` or ``8-bit`` for messages."""
    if quantization.get("load_in_4bit") or quantization.get("_load_in_4bit"):
        double = ", double quantisation" if quantization.get("bnb_4bit_use_double_quant") else ""
        return f"4-bit {quantization.get('bnb_4bit_quant_type', 'nf4')}{double}"
    return "8-bit"


def load_base(base: str, quantization: dict[str, Any] | None, dtype: str) -> Any:
    """The base model in ``dtype``; a quantised one is loaded as trained, then de-quantised."""
    import torch
    from transformers import AutoModelForCausalLM

    torch_dtype = getattr(torch, dtype)
    if quantization is None:
        return AutoModelForCausalLM.from_pretrained(base, dtype=torch_dtype)
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise MergeError(
            "this adapter was trained on a quantised base; de-quantising it needs bitsandbytes: "
            "pip install bitsandbytes (or merge into the original weights with --original-base)"
        ) from exc
    model = AutoModelForCausalLM.from_pretrained(base, quantization_config=quantization_config(quantization),
                                                 dtype=torch.float32)
    return model.dequantize()


def merge_adapter(adapter_dir: Path, base: str, quantization: dict[str, Any] | None, dtype: str) -> Any:
    """Base (de-quantised when ``quantization`` is given) + adapter, merged into plain layers."""
    import torch
    from peft import PeftModel

    model = load_base(base, quantization, dtype if quantization is None else "float32")
    model = PeftModel.from_pretrained(model, str(adapter_dir))
    merged = model.merge_and_unload()
    return merged.to(getattr(torch, dtype))


def default_output(adapter_dir: Path) -> Path:
    if adapter_dir.name == "model" and (adapter_dir.parent / "config.yaml").is_file():
        return adapter_dir.parent / "merged"
    return adapter_dir.with_name(adapter_dir.name + "-merged")


def run_merge(args: argparse.Namespace) -> int:
    """Merge, save into a temporary sibling, then rename: an interrupted merge leaves nothing half-written."""
    from transformers import AutoTokenizer

    from ft_lora.adapter import quiet_library_noise

    quiet_library_noise()
    adapter_dir = find_adapter(Path(args.run_dir).expanduser())
    base, quantization, run_dtype = describe_base(adapter_dir, args.base)
    if args.original_base:
        quantization = None
    dtype = args.dtype or ("float32" if quantization else run_dtype)
    if dtype not in DTYPES:
        dtype = "float32"
    output = Path(args.output).expanduser() if args.output else default_output(adapter_dir)
    if output.exists() and any(output.iterdir()):
        raise MergeError(f"{output} already exists and is not empty; choose another --output")

    print(f"merging the adapter {adapter_dir} into the base {base}")
    if quantization:
        print(
            f"note: the adapter was trained on a {quantization_summary(quantization)} base (QLoRA). It is merged "
            f"into that base de-quantised to float32, the weights the adapter was trained against, so the merged "
            f"model reproduces the trained model; it is not the original full-precision base plus the adapter "
            f"(use --original-base for that; it differs by the quantisation's rounding error)."
        )
    merged = merge_adapter(adapter_dir, base, quantization, dtype)
    partial = output.with_name(output.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    merged.save_pretrained(str(partial), safe_serialization=True)
    tokenizer_source = adapter_dir if (adapter_dir / "tokenizer_config.json").is_file() else base
    AutoTokenizer.from_pretrained(str(tokenizer_source)).save_pretrained(str(partial))
    run_dir = adapter_dir.parent
    if (run_dir / "run.json").is_file():  # merged from an ft run: the run's model card, marked merged
        write_model_card(partial, run_dir, merged_from=adapter_dir)
    if output.exists():
        output.rmdir()
    partial.rename(output)
    n_params = sum(p.numel() for p in merged.parameters())
    print(f"merged model: {output} (safetensors, {dtype}, {n_params:,} parameters)")
    print(f"  load it with AutoModelForCausalLM.from_pretrained({str(output)!r}), or: ft generate {output} --prompt \"...\"")
    return 0
