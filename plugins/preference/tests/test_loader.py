"""Preference rows read with ft-data's sources and checked: text and messages forms, KTO rows, bad rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ft.api import DataError
from ft_preference.loader import load_preference_rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_preference_rows_in_text_and_messages_form(tmp_path, test_data):
    hh = test_data / "hh-rlhf" / "harmless-base-test.jsonl.gz"
    loaded = load_preference_rows({"path": str(hh), "max_rows": 20, "val_size": 0.1}, "pairwise", seed=3)
    assert (len(loaded.train), len(loaded.eval), loaded.form) == (18, 2, "text")
    row = loaded.train[0]
    assert row["prompt"].rstrip().endswith("Assistant:") and row["chosen"] != row["rejected"]
    assert row["chosen"].startswith(" ")
    messages = [{"prompt": [{"from": "human", "value": "Hi?"}], "chosen": "Hello!", "rejected": "Go away."}]
    loaded = load_preference_rows({"message_property_mappings": {"role": "from", "content": "value"}}, rows=messages)
    assert loaded.form == "messages"
    assert loaded.train[0] == {"prompt": [{"role": "user", "content": "Hi?"}],
                               "chosen": [{"role": "assistant", "content": "Hello!"}],
                               "rejected": [{"role": "assistant", "content": "Go away."}]}
    kto = load_preference_rows({}, "unpaired", rows=[{"prompt": "2+2?", "completion": "4", "label": True}])
    assert kto.train == [{"prompt": "2+2?", "completion": "4", "label": True}]


def test_bad_preference_rows_name_the_line(tmp_path):
    data = write_jsonl(tmp_path / "prefs.jsonl", [{"prompt": "Q", "chosen": "A", "rejected": "B"},
                                                  {"prompt": "Q", "chosen": "same", "rejected": "same"}])
    with pytest.raises(DataError, match=r"prefs.jsonl line 2: 'chosen' and 'rejected' are identical"):
        load_preference_rows({"path": str(data)})
    data = write_jsonl(tmp_path / "kto.jsonl", [{"prompt": "Q", "completion": "A", "label": "yes"}])
    with pytest.raises(DataError, match=r"kto.jsonl line 1: 'label' must be true \(desirable\) or false"):
        load_preference_rows({"path": str(data)}, "unpaired")
