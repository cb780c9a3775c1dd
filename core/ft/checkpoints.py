"""Crash-safe checkpoints: written to a staging folder, marked complete, renamed into place.

A checkpoint folder ``checkpoints/checkpoint-N`` exists only once every rank has written its part and
rank 0 has written the completion mark (:data:`MARK`) into it; a folder without the mark (from an
older ft, or a copy made by hand) is never resumed from. Old checkpoints are rotated
(``trainer.save_total_limit``) only after the new one is in place, so the last complete checkpoint
always survives.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

from ft.distributed import barrier, ranks_from_env

#: The completion mark inside a checkpoint folder.
MARK = "ft-checkpoint.json"
#: Where checkpoints are written before they are complete (under ``checkpoints/``).
STAGING = ".staging"
_STEP = re.compile(r"^checkpoint-(\d+)$")


def publish_checkpoint(trainer: Any, root: Path) -> Path:
    """Mark the staged checkpoint complete, move it into ``root`` and rotate old complete ones."""
    step = trainer.state.global_step
    staged = root / STAGING / f"checkpoint-{step}"
    final = root / f"checkpoint-{step}"
    ranks = ranks_from_env()
    barrier(ranks)  # every rank's part (its RNG state) is written
    if trainer.args.should_save:
        (staged / MARK).write_text(json.dumps({"step": step, "complete": True,
                                               "time": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")
        if final.exists():  # a stale folder of the same step (an earlier, interrupted attempt)
            shutil.rmtree(final)
        staged.rename(final)
        shutil.rmtree(root / STAGING, ignore_errors=True)
        rotate(root, trainer.args.save_total_limit)
    barrier(ranks)
    return final


def complete_checkpoints(root: Path) -> list[Path]:
    """The complete checkpoint folders under ``root``, oldest step first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP.match(p.name)) and (p / MARK).is_file()]
    return [p for _, p in sorted(found)]


def incomplete_checkpoints(root: Path) -> list[Path]:
    """Folders under ``root`` that look like checkpoints but are not complete (and the staging folder)."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir()
                  if p.name == STAGING or (_STEP.match(p.name) and not (p / MARK).is_file()))


def last_complete_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint under ``root`` (a run's ``checkpoints/``), or ``None``."""
    found = complete_checkpoints(root)
    return found[-1] if found else None


def rotate(root: Path, limit: int | None) -> None:
    """Delete the oldest complete checkpoints beyond ``limit`` (never the newest)."""
    if not limit:
        return
    found = complete_checkpoints(root)
    for old in found[: max(0, len(found) - max(limit, 1))]:
        shutil.rmtree(old, ignore_errors=True)


def resolve_resume_from(value: str, run_root: str) -> Path:
    """The complete checkpoint ``run.resume_from`` names; :class:`ConfigError` when there is none."""
    from ft.errors import ConfigError

    if value == "last":
        runs = sorted((p for p in Path(run_root).glob("*") if (p / "checkpoints").is_dir()),
                      key=lambda p: p.stat().st_mtime, reverse=True)
        for run in runs:
            found = last_complete_checkpoint(run / "checkpoints")
            if found is not None:
                return found
        raise ConfigError(f"run.resume_from=last: no run under run.root={run_root!r} has a complete checkpoint")
    path = Path(value).expanduser()
    try:
        exists = path.exists()
    except OSError as exc:
        raise ConfigError(f"run.resume_from={value!r}: {exc.strerror or exc}") from exc
    if not exists:
        raise ConfigError(f"run.resume_from={value!r}: no such file or folder; name a checkpoint folder or a run folder")
    if (path / MARK).is_file():
        return path
    found = last_complete_checkpoint(path / "checkpoints") or last_complete_checkpoint(path)
    if found is None:
        raise ConfigError(f"run.resume_from={value!r}: not a complete checkpoint, and no complete checkpoint under it "
                          f"(a checkpoint is complete once it holds {MARK})")
    return found
