from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tiny import SHARED_DATA, build_tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random Llama with a locally trained ChatML tokenizer (built once per session)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present next to the repository")
    return SHARED_DATA


@pytest.fixture
def chat_file(tmp_path) -> Path:
    """A small chat dataset: the same few Q/A pairs repeated, so a tiny model can fit it."""
    rows = []
    pairs = [("What is 2 plus 3?", "2 plus 3 is 5."), ("Name a colour.", "Blue is a colour."),
             ("Sort 3, 1, 2.", "1, 2, 3")]
    for i in range(48):
        q, a = pairs[i % len(pairs)]
        rows.append({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
    path = tmp_path / "chat.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
