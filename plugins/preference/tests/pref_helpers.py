"""Shared helpers of the ft-preference tests: a small learnable preference set and run arguments."""

from __future__ import annotations

import json
from pathlib import Path


def write_pairs(path: Path, n_prompts: int = 40) -> Path:
    """Chat pairs where the chosen reply always answers and the rejected one always refuses:
    a preference a tiny model can learn in a few steps and carry over to held-out prompts."""
    rows = []
    for i in range(n_prompts):
        a, b = i % 7 + 1, i // 7 + 2
        rows.append({
            "prompt": [{"role": "user", "content": f"What is {a} plus {b}?"}],
            "chosen": [{"role": "assistant", "content": f"The answer is {a + b}."}],
            "rejected": [{"role": "assistant", "content": "I do not know, sorry."}],
        })
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run_args(model_dir: Path, data: Path, root: Path, name: str, steps: int = 4, *extra: str) -> list[str]:
    return [
        f"model.name_or_path={model_dir}", f"data.path={data}", "data.val_size=8",
        f"trainer.max_steps={steps}", "trainer.micro_batch_size=4", "trainer.logging_steps=1",
        "optim.lr=5e-3", "optim.warmup_steps=0", f"run.root={root}", f"run.name={name}", *extra,
    ]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def build_ctx(overrides: list[str], run_dir: Path):
    """A run context taken through ft's lifecycle up to ``create_trainer`` (the same hook calls as
    ``ft run``), so tests can look at the trainer, the model and the reference before training."""
    from ft_testing import build_context

    return build_context(overrides, run_dir)


def live_instances(cls: type) -> set[int]:
    """Ids of the live objects of ``cls`` (to count model copies)."""
    import gc

    gc.collect()
    return {id(o) for o in gc.get_objects() if isinstance(o, cls)}
