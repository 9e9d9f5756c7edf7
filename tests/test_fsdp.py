"""--fsdp: two gloo processes with FSDP2 follow the loss curve of one process at the same global batch,
checkpoint the full weights (so one process samples them) and resume."""
import io
import json
import os

import torch
from rich.console import Console

from attnkit.config import SampleConfig, TrainConfig
from attnkit.engine.sample import load_run, run_sampling
from attnkit.engine.trainer import run_training
from multiproc import free_port, run_workers

QUIET = Console(file=io.StringIO())
BASE = dict(flavor="debug", max_steps=4, eval_interval=1, eval_batches=1, device="cpu", grad_accum=2)


def _worker(rank, world, port, out, max_steps, resume):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    run_training(TrainConfig(**{**BASE, "max_steps": max_steps}, batch_size=2, fsdp=True, out=out,
                             resume=resume), console=QUIET)


def _train_losses(run_dir):
    return [m["train_loss"] for m in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
            if "train_loss" in m]


def test_fsdp_two_processes_follow_one_process_and_resume(tmp_path):
    single = run_training(TrainConfig(**BASE, batch_size=4, out=str(tmp_path / "single")), console=QUIET)
    out = str(tmp_path / "fsdp")
    run_workers(_worker, args=(2, free_port(), out, 2, False))
    run_workers(_worker, args=(2, free_port(), out, 4, True))  # --resume
    torch.testing.assert_close(_train_losses(tmp_path / "fsdp"), _train_losses(tmp_path / "single"),
                               rtol=1e-5, atol=1e-6)
    state = torch.load(tmp_path / "fsdp" / "checkpoints" / "step_0000004.state.pt", weights_only=False)
    assert len(state["rng"]) == 2 and state["config"]["fsdp"]  # really two processes, sharded
    loaded = load_run(out)  # one process reads the gathered safetensors
    assert run_sampling(SampleConfig(run=out, options={"prompt": "The"}, max_new_tokens=5, stream=False), QUIET)["samples"]
    for k, v in single.model.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[k], v, rtol=1e-4, atol=1e-5)
