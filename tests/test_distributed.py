"""ft on several processes (gloo, CPU): the same job on 2 ranks trains like 1 process with the same global batch.

Each test runs the real command line (`ft run dist.nproc_per_node=2 ...`), which starts the ranks through
torch.distributed's elastic launcher; the 1-process baseline uses micro batch 4, the 2-rank runs micro
batch 2 on each rank. dist=fsdp and dist=zero2/zero3 are tested in their plugins (plugins/fsdp,
plugins/deepspeed) against the same baseline.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from ft_testing import (assert_loads_without_ft, assert_same_run, distributed_env, free_port, install_fake_plugin,
                        only_run, run_ft, tiny_job_args, write_chat_rows)

pytestmark = pytest.mark.slow


def start_side_by_side(args_per_process: list[list[str]], envs: list[dict[str, str]], cwd) -> list[tuple[str, str]]:
    """Start ``python -m ft <args>`` once per entry, all at once (ranks or machines of one job), wait for every
    one, and return their (stdout, stderr); each must exit 0."""
    import os

    base = {**os.environ, "HF_HUB_OFFLINE": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "ft", *args], env={**base, **env}, cwd=cwd, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for args, env in zip(args_per_process, envs)]
    outputs = [proc.communicate(timeout=600) for proc in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, out[-2000:] + err[-4000:]
    return outputs


def test_ddp_on_two_ranks_trains_like_one_process_and_saves_a_plain_model(ft_job, one_process_run, tiny_model_dir):
    run = ft_job.finished("dist=ddp", "dist.nproc_per_node=2", "trainer.micro_batch_size=2")
    assert json.loads((run / "run.json").read_text())["world_size"] == 2
    assert (run / "ft.rank1.log").is_file()
    assert_same_run(one_process_run, run, start=tiny_model_dir)
    assert_loads_without_ft(run / "model")


def test_two_nodes_on_one_machine_train_like_one_node(one_process_run, tiny_model_dir, tmp_path):
    """nnodes=2, one process each, c10d rendezvous on 127.0.0.1: both ft commands started side by side."""
    endpoint = f"127.0.0.1:{free_port()}"
    data, root = write_chat_rows(tmp_path / "chat.jsonl", n=32), tmp_path / "runs"
    outputs = start_side_by_side(
        [tiny_job_args(tiny_model_dir, data, root, "dist.nnodes=2", f"dist.node_rank={rank}", f"dist.rdzv_endpoint={endpoint}",
                       "dist.rdzv_id=two-nodes", "trainer.micro_batch_size=2") for rank in (0, 1)],
        [distributed_env(tmp_path)] * 2, tmp_path)
    assert "starting 1 processes on machine 1 of 2" in outputs[1][1]
    run = only_run(root)
    assert json.loads((run / "run.json").read_text())["world_size"] == 2
    assert_same_run(one_process_run, run, start=tiny_model_dir)


def test_lora_on_two_ranks_equals_one_process(ft_job):
    # dropout draws different masks on each rank than in one process: off, so the runs can be compared exactly
    lora = ("+adapter=lora", "adapter.dropout=0")
    plain = ft_job.finished(*lora, "trainer.micro_batch_size=4")
    ranks = ft_job.finished(*lora, "dist.nproc_per_node=2", "trainer.micro_batch_size=2")
    assert (ranks / "model" / "adapter_model.safetensors").is_file()
    assert_same_run(plain, ranks)


def test_multipack_on_two_ranks_equals_one_process(ft_job):
    # 32 rows fill 6 packs of 192 tokens: divisible by 2 ranks, so no pack is added to even out the ranks
    # (with an odd count the 2-rank sampler re-packs into one more, and the batches differ by design)
    packing = ("+packing=multipack", "data.sequence_len=192")
    plain = ft_job.finished(*packing, "trainer.micro_batch_size=2", steps=3)
    ranks = ft_job.finished(*packing, "dist.nproc_per_node=2", "trainer.micro_batch_size=1", steps=3)
    for run in (plain, ranks):
        assert "32 rows -> 6 packs" in (run / "ft.log").read_text()
    assert_same_run(plain, ranks)


FLAKY = '''
from ft.api import DataError, PluginInfo, hookimpl

FT_PLUGIN = PluginInfo(name="flaky", description="bad data that only rank 1 sees", always_active=True)
batches = [0]


@hookimpl
def process_batch(ctx, batch, training):
    batches[0] += 1
    if ctx.rank == 1 and batches[0] == 3:
        raise DataError("row 7 of chat.jsonl has no assistant turn (seen by rank 1 only)")
'''


def test_a_failing_rank_ends_the_job_with_its_one_line_and_a_failed_run_folder(ft_job, tmp_path):
    site = tmp_path / "site"
    install_fake_plugin(site, "ft-flaky", "flaky", FLAKY)
    started = time.monotonic()
    root, result = ft_job("dist.nproc_per_node=2", "trainer.micro_batch_size=2", steps=8, site=site)
    elapsed = time.monotonic() - started
    assert result.returncode == 2, result.stderr[-3000:]  # a data error is the user's: exit code 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ft: error: rank 1 failed: row 7 of chat.jsonl has no assistant turn"), result.stderr[-3000:]
    assert "Traceback" not in result.stderr  # rank 0 losing its peer is not shown as a second error
    run = only_run(root)
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "failed" and "rank 1 failed" in record["error"]
    assert not (run / "model").exists() and not (run / "model.partial").exists() and not (run / "summary.json").exists()
    assert elapsed < 120, f"the job took {elapsed:.0f} s to end after a rank failed"


def test_a_sweep_job_that_needs_two_processes_launches_them(ft_job):
    root, result = ft_job("dist.nproc_per_node=2", "trainer.micro_batch_size=2", "optim.lr=1e-3,3e-3", steps=2, multirun=True)
    assert result.returncode == 0, result.stderr[-4000:]
    sweep = only_run(root)
    for index in (0, 1):
        record = json.loads((sweep / str(index) / "run.json").read_text())
        assert record["world_size"] == 2 and (sweep / str(index) / "model" / "model.safetensors").is_file()
    summary = json.loads((sweep / "summary.json").read_text())
    jobs = summary["jobs"] if isinstance(summary, dict) else summary
    assert [j["status"] for j in jobs] == ["ok", "ok"] and all("train_loss" in j["metrics"] for j in jobs)


def test_launch_keys_are_checked_before_anything_starts(tmp_path):
    cases = {
        "dist.nnodes=2": "dist.nnodes=2 needs dist.rdzv_endpoint=host:port",
        "dist.node_rank=1": "dist.node_rank=1 is not below dist.nnodes=1",
        "dist.rdzv_endpoint=nohost": "is not host:port",
        "dist.nproc_per_node=0": "dist.nproc_per_node",
    }
    for override, expected in cases.items():
        result = run_ft(["validate", override], cwd=tmp_path, timeout=120)
        assert result.returncode == 2 and expected in result.stderr, (override, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1


def test_an_environment_only_launcher_works_like_torchrun(one_process_run, tiny_model_dir, tmp_path):
    """What a Kubernetes PyTorchJob (or any script) does: start each rank itself with RANK, WORLD_SIZE,
    LOCAL_RANK, MASTER_ADDR and MASTER_PORT set; ft reads them and starts nothing."""
    data, root, port = write_chat_rows(tmp_path / "chat.jsonl", n=32), tmp_path / "runs", str(free_port())
    envs = [{**distributed_env(tmp_path), "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank),
             "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port} for rank in (0, 1)]
    outputs = start_side_by_side([tiny_job_args(tiny_model_dir, data, root, "trainer.micro_batch_size=2")] * 2, envs, tmp_path)
    assert not any("starting" in err for _, err in outputs)  # the launcher started the processes: ft started none
    assert_same_run(one_process_run, only_run(root), start=tiny_model_dir)


def test_accelerate_launch_starts_the_ranks_and_ft_starts_none(one_process_run, tiny_model_dir, tmp_path):
    """`accelerate launch --multi_gpu --num_processes 2 -m ft run ...` (accelerate's torchrun path; on a CPU
    machine its ranks take gloo) trains like one process and writes one run."""
    import os
    from pathlib import Path

    data, root = write_chat_rows(tmp_path / "chat.jsonl", n=32), tmp_path / "runs"
    accelerate = Path(sys.executable).parent / "accelerate"
    command = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--main_process_port", str(free_port()), "--mixed_precision", "no", "--dynamo_backend", "no",
               "-m", "ft", *tiny_job_args(tiny_model_dir, data, root, "trainer.micro_batch_size=2")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **distributed_env(tmp_path)}
    result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert "starting 2 processes" not in result.stderr  # accelerate started them
    run = only_run(root)
    assert json.loads((run / "run.json").read_text())["world_size"] == 2 and (run / "ft.rank1.log").is_file()
    assert_same_run(one_process_run, run, start=tiny_model_dir)


FAKE_SRUN = r'''#!/bin/bash
# srun stand-in: run the command once per node, side by side, with SLURM_NODEID set; fail if any fails.
while [[ "$1" == --* ]]; do shift; done
pids=()
for ((node = 0; node < SLURM_NNODES; node++)); do
  SLURM_NODEID=$node "$@" > "$FAKE_SLURM_LOGS/node$node.$RANDOM.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
'''


def test_the_slurm_example_trains_on_two_nodes(one_process_run, tiny_model_dir, tmp_path):
    """examples/slurm/ft-multinode.sbatch under stand-ins for srun and scontrol: 2 nodes of 1 process."""
    import os
    from pathlib import Path

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(FAKE_SRUN)
    (bin_dir / "scontrol").write_text("#!/bin/bash\necho localhost\n")
    for tool in ("srun", "scontrol"):
        (bin_dir / tool).chmod(0o755)
    logs = tmp_path / "logs"
    logs.mkdir()
    data = write_chat_rows(tmp_path / "chat.jsonl", n=32)
    root = tmp_path / "runs"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **distributed_env(tmp_path), "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "SLURM_JOB_NODELIST": "localhost", "SLURM_NNODES": "2", "SLURM_JOB_ID": "4242", "SLURM_GPUS_ON_NODE": "1",
           "FT": str(Path(sys.executable).parent / "ft"), "FT_RDZV_PORT": str(free_port()), "FAKE_SLURM_LOGS": str(logs)}
    script = Path(__file__).resolve().parents[1] / "examples" / "slurm" / "ft-multinode.sbatch"
    overrides = tiny_job_args(tiny_model_dir, data, root, "trainer.micro_batch_size=2")[1:]
    result = subprocess.run(["bash", str(script), *overrides], env=env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=900)
    node_logs = "\n".join(p.read_text()[-2000:] for p in logs.iterdir())
    assert result.returncode == 0, result.stderr[-2000:] + node_logs
    run = only_run(root)
    assert run.name == "slurm-4242" and json.loads((run / "run.json").read_text())["world_size"] == 2
    assert_same_run(one_process_run, run, start=tiny_model_dir)


RANKS_THAT_END_AT_ONCE = r'''
"""Fork 2 gloo ranks per trial (torch imported once); each ends right after a burst of collectives through
ft's exit. Prints one line: how many trials ended with both ranks exiting 0 within the deadline."""
import os, sys, time
import torch, torch.distributed as dist
import torch._dynamo, torch.nn.parallel.distributed  # imported once, before forking
from ft.distributed import exit_process
from ft_testing import free_port


def rank(rank: int, port: int) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(64, 64))  # holds the group, like a trainer
    model(torch.randn(4, 64)).sum().backward()
    for work in [dist.all_reduce(torch.ones(8), async_op=True) for _ in range(20)]:
        work.wait()
    exit_process(0)


clean, trials = 0, int(sys.argv[1])
for _ in range(trials):
    port, pids = free_port(), []
    for r in (0, 1):
        pid = os.fork()
        if pid == 0:
            try:
                rank(r, port)
            except SystemExit as stop:  # a plain sys.exit: the interpreter's own shutdown follows
                sys.exit(stop.code)
            os._exit(70)  # exit_process returned
        pids.append(pid)
    deadline, codes = time.monotonic() + 30, []
    for pid in pids:
        while not (done := os.waitpid(pid, os.WNOHANG))[0] and time.monotonic() < deadline:
            time.sleep(0.01)
        if done[0]:
            codes.append(os.waitstatus_to_exitcode(done[1]))
        else:
            os.kill(pid, 9); os.waitpid(pid, 0); codes.append("hung")
    clean += codes == [0, 0]
    if codes != [0, 0]:
        print("trial ended", codes, file=sys.stderr)
print(f"{clean} of {trials} clean")
'''


def test_ranks_that_finish_together_all_exit_cleanly(tmp_path):
    """Ending the interpreter normally after gloo collectives deadlocked or aborted some ranks (a gloo worker
    thread freeing a finished collective needs the GIL during shutdown): 7-11 % of such trials hung before
    ft.distributed.exit_process. Every trial must end with both ranks exiting 0."""
    import os

    script = tmp_path / "end_at_once.py"
    script.write_text(RANKS_THAT_END_AT_ONCE)
    result = subprocess.run([sys.executable, str(script), "100"], capture_output=True, text=True, timeout=900,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "100 of 100 clean", result.stderr[-3000:]
