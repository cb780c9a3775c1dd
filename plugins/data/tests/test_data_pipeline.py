"""The data stage around the formats: sources, mixing, splits, length policy, counts, cache, bad data.

Uses the tiny ChatML tokenizer; every test gets its own cache folder (FT_CACHE_DIR).
"""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import pytest

from ft.errors import DataError
from ft_data.api import BUILTIN_FORMATS, prepare_data

CHAT = [{"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                      {"role": "assistant", "content": f"{i} plus {i} is {2 * i}."}]} for i in range(12)]
ALPACA = [{"instruction": f"Double {i}.", "input": "" if i % 2 else str(i), "output": str(2 * i)} for i in range(12)]


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("FT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "data"


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def prep(tok, cfg: dict, **kwargs):
    return prepare_data({"sequence_len": 256, **cfg}, tok, dict(BUILTIN_FORMATS), seed=1, progress=False, **kwargs)


def entries(cache_dir: Path) -> list[Path]:
    return [p for p in cache_dir.iterdir() if not p.name.startswith(".")] if cache_dir.exists() else []


# -- sources -------------------------------------------------------------------------------------


def test_every_file_kind_gives_the_same_rows(tok, tmp_path):
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(ALPACA)
    files = {"jsonl": write_jsonl(tmp_path / "a.jsonl", ALPACA), "json": tmp_path / "a.json",
             "gz": tmp_path / "a.jsonl.gz", "parquet": tmp_path / "a.parquet", "csv": tmp_path / "a.csv",
             "arrow": tmp_path / "a.arrow"}
    files["json"].write_text(json.dumps(ALPACA))
    files["gz"].write_bytes(gzip.compress(files["jsonl"].read_bytes()))
    pq.write_table(table, files["parquet"])
    pcsv.write_csv(table.cast(pa.schema([(n, pa.string()) for n in table.column_names])), files["csv"])
    with pa.OSFile(str(files["arrow"]), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    reference = prep(tok, {"path": str(files["jsonl"]), "format": "alpaca", "shuffle": False}).train["input_ids"]
    for kind, path in files.items():
        got = prep(tok, {"path": str(path), "format": "alpaca", "shuffle": False}).train["input_ids"]
        assert got == reference, kind


def test_a_folder_picks_the_files_of_the_split_and_data_files(tok, tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", ALPACA[:8])
    write_jsonl(folder / "test.jsonl", ALPACA[8:])
    assert len(prep(tok, {"datasets": [{"path": str(folder), "format": "alpaca"}]}).train) == 8
    assert len(prep(tok, {"datasets": [{"path": str(folder), "format": "alpaca", "split": "test"}]}).train) == 4
    assert len(prep(tok, {"datasets": [{"path": str(folder), "format": "alpaca", "data_files": ["t*.jsonl"]}]}).train) == 12


def test_several_datasets_each_with_its_own_format_are_mixed(tok, tmp_path):
    chat = write_jsonl(tmp_path / "chat.jsonl", CHAT)
    alpaca = write_jsonl(tmp_path / "alpaca.jsonl", ALPACA)
    prepared = prep(tok, {"datasets": [{"path": str(chat), "format": "chat_template"},
                                       {"path": str(alpaca), "format": "alpaca", "train_on_inputs": True}]})
    assert len(prepared.train) == 24
    stats = {name: part.stats for name, part in prepared.parts.items()}
    assert stats[str(chat)]["format"] == "chat_template" and stats[str(alpaca)]["format"] == "alpaca"
    assert stats[str(alpaca)]["trained_fraction"] == 1.0 and stats[str(chat)]["trained_fraction"] < 1.0


def test_validation_split_by_fraction_and_by_file_and_seeded_shuffle(tok, tmp_path):
    data = write_jsonl(tmp_path / "chat.jsonl", CHAT)
    split = prep(tok, {"path": str(data), "format": "chat_template", "val_size": 0.25})
    assert (len(split.train), len(split.eval)) == (9, 3)
    assert set(map(tuple, split.train["input_ids"])).isdisjoint(map(tuple, split.eval["input_ids"]))
    again = prep(tok, {"path": str(data), "format": "chat_template", "val_size": 0.25})
    assert again.train["input_ids"] == split.train["input_ids"]
    other_seed = prep(tok, {"path": str(data), "format": "chat_template", "val_size": 0.25, "seed": 7})
    assert other_seed.train["input_ids"] != split.train["input_ids"]
    held_out = write_jsonl(tmp_path / "eval.jsonl", CHAT[:2])
    by_file = prep(tok, {"path": str(data), "format": "chat_template", "val_path": str(held_out)})
    assert (len(by_file.train), len(by_file.eval)) == (12, 2)


# -- length policy and counts ----------------------------------------------------------------------


def test_too_long_rows_are_dropped_truncated_or_raised_and_counted(tok, tmp_path):
    rows = CHAT[:4] + [{"messages": [{"role": "user", "content": "hi"},
                                     {"role": "assistant", "content": "long answer " * 80}]}]
    data = write_jsonl(tmp_path / "chat.jsonl", rows)
    dropped = prep(tok, {"path": str(data), "format": "chat_template", "sequence_len": 64})
    assert len(dropped.train) == 4 and dropped.stats["train"]["dropped_too_long"] == 1
    truncated = prep(tok, {"path": str(data), "format": "chat_template", "sequence_len": 64, "too_long": "truncate"})
    assert len(truncated.train) == 5 and max(map(len, truncated.train["input_ids"])) == 64
    assert truncated.stats["train"]["truncated"] == 1
    with pytest.raises(DataError, match=r"chat.jsonl line 5: \d+ tokens, longer than data.sequence_len=64"):
        prep(tok, {"path": str(data), "format": "chat_template", "sequence_len": 64, "too_long": "error"})


def test_rows_with_nothing_trained_are_dropped_and_an_all_masked_set_is_an_error(tok, tmp_path, caplog):
    silent = {"messages": [{"role": "user", "content": "Only a question?"}]}
    data = write_jsonl(tmp_path / "chat.jsonl", CHAT[:3] + [silent])
    prepared = prep(tok, {"path": str(data), "format": "chat_template"})
    assert len(prepared.train) == 3 and prepared.stats["train"]["dropped_no_trained_tokens"] == 1
    nothing = write_jsonl(tmp_path / "nothing.jsonl", [silent] * 3)
    with pytest.raises(DataError, match="no example has a trained token .* 3 with every label masked"):
        prep(tok, {"path": str(nothing), "format": "chat_template"})
    low = write_jsonl(tmp_path / "low.jsonl", [{"segments": [{"text": "word " * 40, "label": False},
                                                             {"text": "x", "label": True}]}])
    with caplog.at_level(logging.WARNING, logger="ft"):
        prep(tok, {"path": str(low), "format": "input_output"})
    assert any("low.jsonl: only" in r.message and "% of tokens are trained" in r.message for r in caplog.records)
    caplog.clear()
    everything = write_jsonl(tmp_path / "everything.jsonl", ALPACA)
    with caplog.at_level(logging.WARNING, logger="ft"):
        prep(tok, {"path": str(everything), "format": "template", "template": "{train}{instruction} {output}"})
    assert any("100% of tokens are trained" in r.message for r in caplog.records)


# -- cache -----------------------------------------------------------------------------------------


def test_the_cache_is_reused_and_an_in_place_edit_invalidates_it(tok, tmp_path, cache_dir):
    data = write_jsonl(tmp_path / "chat.jsonl", CHAT)
    first = prep(tok, {"path": str(data), "format": "chat_template"})
    part = next(iter(first.parts.values()))
    assert not part.cached and Path(part.cache_dir).parent == cache_dir
    second = next(iter(prep(tok, {"path": str(data), "format": "chat_template"}).parts.values()))
    assert second.cached and second.key == part.key
    moved = tmp_path / "elsewhere.jsonl"  # same contents under another path: still a hit
    moved.write_bytes(data.read_bytes())
    assert next(iter(prep(tok, {"path": str(moved), "format": "chat_template"}).parts.values())).cached
    write_jsonl(data, CHAT[:-1] + [{"messages": [{"role": "user", "content": "Edited?"},
                                                 {"role": "assistant", "content": "Yes, edited."}]}])
    edited = next(iter(prep(tok, {"path": str(data), "format": "chat_template"}).parts.values()))
    assert not edited.cached and edited.key != part.key
    assert "Yes, edited." in tok.decode(prep(tok, {"path": str(data), "format": "chat_template", "shuffle": False}).train[-1]["input_ids"])


def test_options_and_the_chat_template_are_part_of_the_key(tok, tmp_path):
    data = write_jsonl(tmp_path / "chat.jsonl", CHAT)
    base = next(iter(prep(tok, {"path": str(data), "format": "chat_template"}).parts.values())).key
    other = next(iter(prep(tok, {"path": str(data), "format": "chat_template", "train_on_eos": "none"}).parts.values())).key
    assert other != base
    tok.chat_template = tok.chat_template.replace("<|im_start|>", "<|im_start|> ")
    try:
        changed = next(iter(prep(tok, {"path": str(data), "format": "chat_template"}).parts.values()))
    finally:
        tok.chat_template = tok.chat_template.replace("<|im_start|> ", "<|im_start|>")
    assert changed.key != base and not changed.cached
    rebuilt = next(iter(prep(tok, {"path": str(data), "format": "chat_template"}, rebuild=True).parts.values()))
    assert rebuilt.key == base and not rebuilt.cached


# -- bad data: one message with file and line, nothing cached ---------------------------------------

BAD_CASES = {
    "invalid JSON": ('{"messages": [}\n', "chat_template", r"bad.jsonl line 2: invalid JSON .*each line must be one JSON object"),
    "missing field": ('{"conversation": []}\n', "chat_template", r"bad.jsonl line 2: missing the field 'messages' \(a list of messages\); fields present: conversation"),
    "wrong type": ('{"instruction": "x", "output": 5}\n', "alpaca", r"bad.jsonl line 2: field 'output' must be a string, got a number"),
    "empty conversation": ('{"messages": []}\n', "chat_template", r"bad.jsonl line 2: empty conversation: field 'messages' has no messages"),
    "unknown role": ('{"messages": [{"role": "robot", "content": "beep"}]}\n', "chat_template",
                     r"bad.jsonl line 2: message 1 has an unknown role 'robot'; known roles: .* \(map others with data.roles"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_data_names_file_line_and_expectation_and_caches_nothing(tok, tmp_path, cache_dir, case):
    bad_line, fmt, message = BAD_CASES[case]
    good = json.dumps(CHAT[0] if fmt == "chat_template" else ALPACA[0])
    data = tmp_path / "bad.jsonl"
    data.write_text(good + "\n" + bad_line + good + "\n")
    with pytest.raises(DataError, match=message) as caught:
        prep(tok, {"path": str(data), "format": fmt})
    assert "\n" not in str(caught.value)
    assert entries(cache_dir) == []


def test_bad_rows_drop_counts_them_instead(tok, tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps(CHAT[0]) + "\n{oops\n" + '{"messages": []}\n' + json.dumps(CHAT[1]) + "\n")
    prepared = prep(tok, {"path": str(data), "format": "chat_template", "bad_rows": "drop"})
    assert len(prepared.train) == 2 and prepared.stats["train"]["dropped_bad_row"] == 2


def test_ft_preprocess_exits_2_with_one_line_on_bad_data(tiny_model_dir, tmp_path):
    from ft_testing import run_ft

    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps(CHAT[0]) + "\n" + '{"messages": [{"role": "user"}]}\n')
    done = run_ft(["preprocess", f"model.name_or_path={tiny_model_dir}", "data=chat", f"data.path={data}"],
                  env={"FT_CACHE_DIR": str(tmp_path / "cache")})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == f"ft: error: {data} line 2: message 1 needs a string 'content', got null"
    assert not (tmp_path / "cache" / "data").exists() or entries(tmp_path / "cache" / "data") == []


