"""``ft preprocess``: counts, --show, --export, the cache it leaves, and ``ft run`` reusing it."""

from __future__ import annotations

import json

from ft_testing import run_ft, write_chat_rows


def test_preprocess_reports_shows_exports_and_run_reuses_the_cache(tiny_model_dir, tmp_path):
    data = write_chat_rows(tmp_path / "chat.jsonl", n=12)
    env = {"FT_CACHE_DIR": str(tmp_path / "cache")}
    args = [f"model.name_or_path={tiny_model_dir}", "data=chat", f"data.path={data}"]
    export = tmp_path / "out" / "tokens.jsonl"
    done = run_ft(["preprocess", *args, "--show", "1", "--export", str(export)], env=env)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "tokenized, cached" in out and "rows in: 12   examples: 12   kept: 12" in out
    assert "dropped: none" in out and "trained:" in out and "length: min=" in out
    # Without a terminal, trained text is marked with [[ ]] and the prompt is bare.
    assert "<|im_start|>user\n" in out and "[[" in out and "<|im_end|>]]" in out and "\033[" not in out
    rows = [json.loads(line) for line in export.read_text().splitlines()]
    assert len(rows) == 12 and set(rows[0]) == {"input_ids", "labels", "attention_mask"}
    assert all(len(r["input_ids"]) == len(r["labels"]) == len(r["attention_mask"]) for r in rows)

    again = run_ft(["preprocess", *args], env=env)
    assert again.returncode == 0 and "from cache" in again.stdout

    run = run_ft([*["run"], *args, "trainer.max_steps=1", f"run.root={tmp_path / 'runs'}", "run.name=r",
                  "run.save_final_model=false", "run.plot=false"], env=env)
    assert run.returncode == 0, run.stderr
    log = (tmp_path / "runs" / "r" / "ft.log").read_text()
    assert "cache hit" in log
