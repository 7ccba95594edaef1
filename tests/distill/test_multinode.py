"""Two "nodes" on localhost: two torchrun launchers (one process each) form one gloo group, as
two machines under SLURM do, and read the corpus from shards (`distilxlsr shard`), each its
own; the run ends with the same weights on both ranks, and resumes exactly after the job is
killed node by node."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from distilxlsr.data.shard_writer import write_shards
from distilxlsr.training.checkpoint import list_checkpoints
from tests.helpers import distill_args

STEPS = 30


def _launch(node: int, port: int, teacher, shards, out) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "2",
        "--node_rank",
        str(node),
        "--nproc_per_node",
        "1",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(port),
        "-m",
        "distilxlsr",
        *distill_args(
            teacher,
            None,
            out,
            f"train.max_steps={STEPS}",
            "train.checkpoint_every=2",
            "train.log_every=1",
            train=shards,
        ),
    ]
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )


def _run_two_nodes(port: int, teacher, shards, out) -> None:
    nodes = [_launch(n, port, teacher, shards, out) for n in (0, 1)]
    for node in nodes:
        _, err = node.communicate(timeout=300)
        assert node.returncode == 0, err.decode()[-2000:]


def _weights(run: Path) -> dict:
    return load_file(list_checkpoints(run)[-1] / "model.safetensors")


@pytest.mark.slow
def test_two_nodes_train_as_one_group_and_resume_after_a_node_is_killed(
    tmp_path, teacher_dir, toy_corpus
):
    port = 29000 + os.getpid() % 500
    shards = tmp_path / "shards"  # 4 shards of 3 cuts: two for each node per epoch
    write_shards(toy_corpus / "en", shards, shard_size=3, say=lambda *_: None)
    straight = tmp_path / "straight"
    _run_two_nodes(port, teacher_dir, shards, straight)
    last = list_checkpoints(straight)[-1]
    assert last.name == f"step-{STEPS:07d}"
    ranks = [torch.load(last / f"rank-{r}.pt", weights_only=True) for r in (0, 1)]
    assert torch.equal(ranks[0]["parameter_fingerprint"], ranks[1]["parameter_fingerprint"])

    # Node 1 dies after the checkpoint of step 2. Node 0 then waits in a collective for its
    # lost peer (until the process group's timeout); under SLURM the job ends there (srun kills
    # the other tasks): node 0 is killed too, and the requeued job starts both again.
    cut = tmp_path / "cut"
    nodes = [_launch(n, port + 1, teacher_dir, shards, cut) for n in (0, 1)]
    deadline = time.time() + 300
    while not (cut / "checkpoints" / "step-0000002").is_dir():
        assert all(n.poll() is None for n in nodes), nodes[0].stderr.read().decode()[-2000:]
        assert time.time() < deadline
        time.sleep(0.05)
    os.killpg(nodes[1].pid, signal.SIGKILL)
    nodes[1].wait(timeout=60)
    time.sleep(1.0)  # node 0 runs on into the next collective, which never completes
    if nodes[0].poll() is None:  # (or gloo saw the closed socket and it failed already)
        os.killpg(nodes[0].pid, signal.SIGKILL)
    nodes[0].wait(timeout=60)
    assert f"step-{STEPS:07d}" not in [c.name for c in list_checkpoints(cut)]
    # Both nodes started again: the run resumes and ends where the uninterrupted one ended.
    _run_two_nodes(port + 2, teacher_dir, shards, cut)
    a, b = _weights(straight), _weights(cut)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
