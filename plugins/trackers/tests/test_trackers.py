"""ft-trackers: what each tracker wrote, read back with the tracker's own reader, equals ft's own record."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ft.cli import main
from ft_testing import run_ft, write_chat_rows


def tiny_args(model_dir: Path, root: Path, name: str) -> list[str]:
    data = write_chat_rows(root / "chat.jsonl")
    return [f"model.name_or_path={model_dir}", "data=chat", f"data.path={data}", "data.val_size=0.2",
            "trainer.max_steps=6", "trainer.logging_steps=2", "trainer.micro_batch_size=8", "optim.lr=3e-3",
            f"run.root={root}/runs", f"run.name={name}"]


def losses_of(run: Path) -> dict[int, float]:
    """ft's own record of the training loss: step -> loss (metrics.jsonl)."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records if "loss" in r}


def wandb_records(path: Path):
    """The protobuf records of an offline W&B run file (LevelDB log format: 32 KiB blocks, 7-byte headers)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, pos, pending = 32768, 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        payload = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind not in (1, 2, 3, 4):
            continue
        pending = payload if kind in (1, 2) else pending + payload
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            yield record


@pytest.fixture(scope="module")
def all_trackers_run(tiny_model_dir, tmp_path_factory):
    """One run logging to all four trackers at once, in its own process (as a user runs it)."""
    root = tmp_path_factory.mktemp("trackers")
    result = run_ft(["run", *tiny_args(tiny_model_dir, root, "all"), "logger=[tensorboard,wandb,mlflow,trackio]",
                     f"logger.trackio.dir={root}/trackio"], env={"WANDB_SILENT": "true"})
    assert result.returncode == 0, result.stderr[-3000:]
    return root, root / "runs" / "all"


def test_tensorboard_event_files_hold_the_losses_config_and_final_metrics(all_trackers_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, run = all_trackers_run
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    logged = {e.step: e.value for e in events.Scalars("train/loss")}
    assert logged == pytest.approx(losses_of(run), rel=1e-6)
    summary = json.loads((run / "summary.json").read_text())
    assert events.Scalars("final/eval_loss")[-1].value == pytest.approx(summary["eval_loss"], rel=1e-6)
    text = events.Tensors("ft/config.yaml/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "lr: 0.003" in text


def test_wandb_offline_run_holds_history_ft_config_files_and_final_summary(all_trackers_run):
    _, run = all_trackers_run
    offline = list((run / "wandb").glob("offline-run-*"))
    assert len(offline) == 1
    history, summary, config = {}, {}, {}
    for record in wandb_records(next(offline[0].glob("run-*.wandb"))):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item}
            if "train/loss" in items:
                history[items["train/global_step"]] = items["train/loss"]
        elif kind == "summary":
            summary.update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.summary.update})
        elif kind == "config":
            config.update({i.key: json.loads(i.value_json) for i in record.config.update})
    assert history == pytest.approx(losses_of(run), rel=1e-6)
    assert config["ft"]["optim"]["lr"] == 0.003 and config["ft"]["data"]["format"] == "chat_template"
    assert summary["final/eval_loss"] == pytest.approx(json.loads((run / "summary.json").read_text())["eval_loss"])
    saved = offline[0] / "files" / run.name
    assert (saved / "config.yaml").read_text() == (run / "config.yaml").read_text()
    assert (saved / "run.json").read_text() == (run / "run.json").read_text()


def test_mlflow_store_holds_params_metrics_artifacts_and_a_finished_run(all_trackers_run):
    from mlflow.tracking import MlflowClient

    root, run = all_trackers_run
    client = MlflowClient(f"sqlite:///{root}/runs/mlflow.db")
    [found] = client.search_runs([client.get_experiment_by_name("ft").experiment_id])
    assert found.info.status == "FINISHED" and found.info.run_name == run.name
    assert found.data.params["ft.optim.lr"] == "0.003" and found.data.params["ft.data.format"] == "chat_template"
    history = {m.step: m.value for m in client.get_metric_history(found.info.run_id, "loss")}
    assert history == pytest.approx(losses_of(run), rel=1e-6)
    summary = json.loads((run / "summary.json").read_text())
    assert found.data.metrics["final_eval_loss"] == pytest.approx(summary["eval_loss"])
    assert {a.path for a in client.list_artifacts(found.info.run_id)} == {"config.yaml", "run.json", "summary.json"}
    assert found.info.artifact_uri.startswith((root / "runs" / "mlartifacts").as_uri())
    assert (root / "runs" / "mlartifacts").is_dir() and not (Path.cwd() / "mlruns").exists()


def test_trackio_database_holds_the_losses_config_and_final_metrics(all_trackers_run):
    root, run = all_trackers_run
    import subprocess
    import sys

    # trackio fixes its storage folder when imported: read it back in a process pointed at the run's.
    script = ("import json; from trackio import SQLiteStorage as S; "
              f"print(json.dumps({{'logs': S.get_logs('ft', {run.name!r}), 'config': S.get_run_config('ft', {run.name!r})}}))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TRACKIO_DIR": str(root / "trackio")})
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    logged = {r["train/global_step"]: r["train/loss"] for r in found["logs"] if "train/loss" in r}
    assert logged == pytest.approx(losses_of(run), rel=1e-6)
    assert found["config"]["ft"]["optim"]["lr"] == 0.003
    final = [r for r in found["logs"] if "final/eval_loss" in r]
    assert final and final[0]["final/eval_loss"] == pytest.approx(json.loads((run / "summary.json").read_text())["eval_loss"])


def test_the_run_records_the_trackers_and_restores_the_environment(tiny_model_dir, tmp_path, capsys):
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert main(["run", *tiny_args(tiny_model_dir, tmp_path, "two"), "logger=[tensorboard,mlflow]",
                 "logger.tensorboard.dir=tb"]) == 0
    run = tmp_path / "runs" / "two"
    assert json.loads((run / "run.json").read_text())["choices"]["logger"] == "tensorboard,mlflow"
    assert any((run / "tb").glob("events.out.tfevents.*")) and (tmp_path / "runs" / "mlflow.db").is_file()
    assert "MLFLOW_TRACKING_URI" not in os.environ and "MLFLOW_EXPERIMENT_NAME" not in os.environ
    assert "trackers: tensorboard -> " in (run / "ft.log").read_text()


def test_bad_tracker_selections_fail_at_validate_with_one_line(capsys, monkeypatch):
    assert main(["validate", "logger=[tensorboard,wandb]", "logger.wandb.mode=online"]) == 0
    assert main(["validate", "logger=tensorboard", "trainer.report_to=[tensorboard]"]) == 2
    assert "drop it from trainer.report_to" in capsys.readouterr().err
    assert main(["validate", "logger=[tensorboard,tensorbord]"]) == 2
    assert "did you mean 'tensorboard'" in capsys.readouterr().err
    assert main(["validate", "logger=wandb", "logger.wandb.mode=sometimes"]) == 2
    assert "logger.wandb.mode" in capsys.readouterr().err
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    assert main(["validate", "logger=wandb"]) == 2
    assert "pip install 'ft-trackers[wandb]'" in capsys.readouterr().err
