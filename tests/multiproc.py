"""Multi-process tests without fork: a process that has run OpenMP (and pytest-xdist's threads) can deadlock in
a forked child, e.g. inside torch.set_num_threads. Workers are spawned (a fresh interpreter each) and joined under
a deadline, so a hung collective fails one test instead of hanging CI."""
import socket
import time

import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_workers(fn, args: tuple, nprocs: int = 2, timeout: float = 300.0) -> None:
    """Run fn(rank, *args) in nprocs spawned processes; raise if any fails or all have not ended within timeout."""
    ctx = mp.start_processes(fn, args=args, nprocs=nprocs, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout
    while not ctx.join(timeout=1.0):  # raises ProcessRaisedException / ProcessExitedException on a failure
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            raise TimeoutError(f"{nprocs} workers of {fn.__name__} still running after {timeout:.0f} s")
