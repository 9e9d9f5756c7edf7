"""Faults a user meets on a real machine: a second writer on the same run, a full or read-only disk, a kill -9
in the middle of a checkpoint write, the umask. Each refused command prints one line, exits 1 and leaves the
run directory byte for byte as it was. Processes are started as subprocesses (never forked)."""
import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

import pytest
import torch
from safetensors.torch import load_file

from attnkit.engine.lock import lock_path, run_lock

from cli_invoke import run  # tests/cli is on sys.path
from test_run_dirs import DEBUG, fails_cleanly, one_line, snapshot


def attnkit(*argv, **kw) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "attnkit.cli", *map(str, argv)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **kw)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "gpt"
    code, _, err = run(["train", *DEBUG, "--keep-last", "2", "--out", run_dir], _NoCapture())
    assert code == 0, err
    return run_dir


class _NoCapture:
    """capsys stand-in for a module fixture (output goes to the test log)."""
    def readouterr(self):
        return type("Out", (), {"out": "", "err": ""})()


@pytest.fixture
def copy(trained, tmp_path):
    dst = tmp_path / "runs" / "gpt"
    shutil.copytree(trained, dst, symlinks=True)
    return dst


# ---- one owner per run directory -------------------------------------------------------------------------
def test_a_second_writer_is_refused_and_changes_nothing(copy, capsys):
    with run_lock(copy):  # this process owns the run, as a train in another terminal would
        for argv in (["train", "--out", copy, "--resume", "--max-steps", "6"],
                     ["train", *DEBUG, "--out", copy, "--overwrite"],
                     ["average", "--run", copy, "--last", "2"]):
            err = fails_cleanly(argv, copy, capsys)
            assert err == (f"error: {copy} is in use by process {os.getpid()} (another train or average); wait "
                           f"for it to finish or stop it, or choose another --out")
    assert not lock_path(copy).exists()  # released


def test_a_stale_lock_is_taken_over_with_a_note(copy, capsys):
    lock_path(copy).write_text("4194304\n")  # above pid_max: a process that cannot be alive holds nothing
    code, _, err = run(["train", "--out", copy, "--resume", "--max-steps", "6"], capsys)
    assert code == 0
    assert one_line(err) == (f"note: took over the lock of {copy} left by pid 4194304, which no longer holds "
                             f"it (killed?)")
    assert not lock_path(copy).exists()


def test_a_file_system_without_locks_fails_safe(copy, capsys, monkeypatch):
    import fcntl

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    err = fails_cleanly(["train", "--out", copy, "--resume", "--max-steps", "6"], copy, capsys)
    assert err == (f"error: cannot lock {copy}: its file system does not support file locks (ENOLCK); choose "
                   f"an --out on a local disk")


@pytest.mark.slow
def test_two_fresh_trains_race_for_one_run_directory(tmp_path):
    """Started together, exactly one trains; the other is refused in one line (in use, or already a run)."""
    for race in range(3):
        out = tmp_path / f"race{race}" / "gpt"
        procs = [attnkit("train", *DEBUG, "--out", out) for _ in range(2)]
        results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
        assert sorted(code for code, _ in results) == [0, 1], results
        err = next(err for code, err in results if code == 1)
        assert err.count("\n") == 1 and (" is in use by process " in err or "already holds a gpt run" in err), err
        assert json.loads((out / "checkpoints" / "latest.json").read_text()) == {"step": 4}
        assert sorted(p.name for p in out.parent.iterdir()) == ["gpt", "latest"]  # no staging, no lock left


@pytest.mark.slow
def test_resume_while_another_process_trains_is_refused(tmp_path):
    out = tmp_path / "runs" / "gpt"
    owner = attnkit("train", "--flavor", "debug", "--max-steps", "100000", "--eval-interval", "5",
                    "--eval-batches", "1", "--out", out)
    try:
        latest = out / "checkpoints" / "latest.json"
        deadline = time.time() + 120
        while time.time() < deadline and not latest.is_file():
            time.sleep(0.2)
        owner.send_signal(signal.SIGSTOP)  # hold it still so the directory can be compared byte for byte
        time.sleep(0.5)
        before = snapshot(out.parent)
        second = attnkit("train", "--out", out, "--resume")
        code, err = second.wait(timeout=120), second.stderr.read()
        assert code == 1 and err == (f"error: {out} is in use by process {owner.pid} (another train or average); "
                                     f"wait for it to finish or stop it, or choose another --out\n")
        assert snapshot(out.parent) == before
    finally:
        owner.send_signal(signal.SIGCONT)
        owner.kill()
        owner.wait()


# ---- kill -9 in the middle of a checkpoint write ---------------------------------------------------------
KILL_DURING_WRITE = """
import os, signal, sys
import attnkit.fsio as fsio
real = fsio.atomic_write
def dying(path, content):
    if os.path.basename(str(path)) == sys.argv[1]:  # half the file on disk, then the process is gone
        with open(fsio.temp_path(fsio.Path(path)), "wb") as f:
            f.write(content[: len(content) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
    return real(path, content)
fsio.atomic_write = dying
import attnkit.engine.checkpoint as ck
ck.atomic_write = dying
from attnkit.cli.main import main
main(sys.argv[2:])
"""


@pytest.mark.slow
@pytest.mark.parametrize("victim", ["step_0000004.state.pt", "model.safetensors"])
def test_kill_9_during_a_checkpoint_write_then_resume_is_exact(tmp_path, trained, capsys, victim):
    argv = ["train", *DEBUG, "--out", tmp_path / "runs" / "gpt"]
    proc = subprocess.run([sys.executable, "-c", KILL_DURING_WRITE, victim, *map(str, argv)],
                          env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    run_dir = tmp_path / "runs" / "gpt"
    assert json.loads((run_dir / "checkpoints" / "latest.json").read_text()) == {"step": 2}
    assert list(run_dir.rglob(".*.tmp*"))  # what the kill left: a half-written temp file and the lock file
    code, _, err = run(["train", "--out", run_dir, "--resume"], capsys)
    assert code == 0 and err.startswith("note: took over the lock of"), err
    assert not list(run_dir.rglob(".*.tmp*")) and not lock_path(run_dir).exists()
    a, b = load_file(str(trained / "model.safetensors")), load_file(str(run_dir / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # bit-identical to no kill


# ---- a full or read-only disk ----------------------------------------------------------------------------
@contextlib.contextmanager
def small_tmpfs(root, size="8m"):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = root / f"tmpfs-{uuid.uuid4().hex[:8]}"
    mnt.mkdir()
    got = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True)
    if got.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {got.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
        mnt.rmdir()


def fill(mnt, leave: int):
    """Fill the file system at mnt until `leave` bytes are free."""
    st = os.statvfs(mnt)
    free = st.f_bavail * st.f_frsize
    with open(mnt / "filler", "wb") as f:
        f.write(b"\0" * max(free - leave, 0))


def test_a_full_disk_is_one_line_and_loses_nothing(tmp_path, trained, capsys):
    with small_tmpfs(tmp_path) as mnt:
        run_dir = mnt / "runs" / "gpt"
        shutil.copytree(trained, run_dir, symlinks=True)
        ckpt_before = {p.name: p.read_bytes() for p in (run_dir / "checkpoints").iterdir()}
        weights_before = (run_dir / "model.safetensors").read_bytes()
        fill(mnt, leave=64 * 1024)  # room for config and metrics, not for a checkpoint
        code, _, err = run(["train", "--out", run_dir, "--resume", "--max-steps", "6"], capsys)
        assert code == 1 and one_line(err).startswith(f"error: cannot write {run_dir}/")
        assert err.strip().endswith("No space left on device (ENOSPC)"), err
        assert not list(mnt.rglob(".*.tmp*")) and not lock_path(run_dir).exists()
        assert {p.name: p.read_bytes() for p in (run_dir / "checkpoints").iterdir()} == ckpt_before
        assert (run_dir / "model.safetensors").read_bytes() == weights_before
        rows = [json.loads(s) for s in (run_dir / "metrics.jsonl").read_text().splitlines()]
        assert rows[0]["step"] == 0
        code, out, err = run(["sample", "--run", run_dir, "--prompt", "The", "--max-new-tokens", "5"], capsys)
        assert code == 0 and out.startswith("The"), err  # the last good weights sample
        (mnt / "filler").unlink()  # space again: the run finishes
        code, _, err = run(["train", "--out", run_dir, "--resume", "--max-steps", "6"], capsys)
        assert code == 0, err
        assert json.loads((run_dir / "checkpoints" / "latest.json").read_text()) == {"step": 6}


def test_a_read_only_disk_is_one_line_and_changes_nothing(tmp_path, trained, capsys):
    with small_tmpfs(tmp_path) as mnt:
        run_dir = mnt / "runs" / "gpt"
        shutil.copytree(trained, run_dir, symlinks=True)
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        for argv in (["train", "--out", run_dir, "--resume", "--max-steps", "6"],
                     ["train", *DEBUG, "--out", mnt / "runs" / "new"],
                     ["average", "--run", run_dir, "--last", "2"]):
            err = fails_cleanly(argv, run_dir, capsys)
            assert err.startswith("error: cannot ") and err.endswith("Read-only file system (EROFS)"), err
        code, out, err = run(["sample", "--run", run_dir, "--prompt", "The", "--max-new-tokens", "5"], capsys)
        assert code == 0 and out.startswith("The"), err  # readers need no lock and no write


def test_a_tokenizer_on_a_full_disk_is_one_line(tmp_path, capsys):
    with small_tmpfs(tmp_path, size="1m") as mnt:
        fill(mnt, leave=4096)
        code, _, err = run(["tokenize", "--vocab-size", "400", "--out", mnt / "sp.model"], capsys)
        assert code == 1 and one_line(err) == f"error: cannot write {mnt / 'sp.model'}: No space left on device (ENOSPC)"
        assert sorted(p.name for p in mnt.iterdir()) == ["filler"]


# ---- file modes ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("umask,file_mode,dir_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_every_file_of_a_run_follows_the_umask(tmp_path, capsys, umask, file_mode, dir_mode):
    old = os.umask(umask)
    try:
        code, _, err = run(["train", *DEBUG, "--keep-last", "2", "--out", tmp_path / "runs" / "gpt"], capsys)
        assert code == 0, err
        code, _, err = run(["average", "--run", tmp_path / "runs" / "gpt", "--last", "2", "--out",
                            tmp_path / "runs" / "gpt" / "avg.safetensors"], capsys)
        assert code == 0, err
    finally:
        os.umask(old)
    modes = {str(p.relative_to(tmp_path)): p.stat().st_mode & 0o777 for p in (tmp_path / "runs").rglob("*")
             if not p.is_symlink()}
    assert "runs/gpt/model.safetensors" in modes and "runs/gpt/avg.safetensors" in modes
    assert {k: m for k, m in modes.items() if m != (dir_mode if (tmp_path / k).is_dir() else file_mode)} == {}


# ---- corpus caches cut short ---------------------------------------------------------------------------
def test_a_cut_short_corpus_cache_is_rebuilt_not_trusted(tmp_path):
    import numpy as np

    from attnkit.errors import UserError
    from attnkit.zoo.data import chorales, rl, speech

    meta = {"env": "CartPole-v1", "episodes": 1, "seed": 0, "version": rl.VERSION}
    good = tmp_path / "rl.npz"
    np.savez_compressed(good, meta=json.dumps(meta), observations=np.zeros((3, 4), np.float32),
                        actions=np.zeros(3, np.int64), rewards=np.ones(3, np.float32),
                        starts=np.array([0, 3]), epsilons=np.zeros(1), quit_steps=np.full(1, 500))
    assert rl._read_cache(good, meta).rewards.sum() == 3
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # what a kill -9 mid-write used to leave
    assert rl._read_cache(cut, meta) is None  # so load_or_generate generates it again

    entries = {1: ("bwv1", np.ones((8, 4), np.int16), ""), 2: ("bwv2", None, "not four voices")}
    chorales._write_cache(tmp_path / "chorales.npz", entries)
    assert sorted(chorales._read_cache(tmp_path / "chorales.npz")) == [1, 2]
    (tmp_path / "chorales.npz").write_bytes((tmp_path / "chorales.npz").read_bytes()[:200])
    assert chorales._read_cache(tmp_path / "chorales.npz") == {}  # parsed again, all of it

    (tmp_path / "speech.npz").write_bytes(cut.read_bytes())
    with pytest.raises(UserError, match=r"speech.npz is corrupt or truncated \("):
        speech.load_corpus(tmp_path / "speech.npz")


@pytest.mark.parametrize("code", ["ENOSPC", "EROFS", "EACCES", "EDQUOT"])
def test_every_os_fault_of_a_write_is_one_user_error(tmp_path, monkeypatch, code):
    """fsio.atomic_write, which every file of a run goes through: one line naming file and cause, the old
    content kept, no temp file (as root, EACCES and EDQUOT cannot be provoked for real: the OS call fails here)."""
    from attnkit import fsio
    from attnkit.errors import UserError

    target = tmp_path / "metrics.jsonl"
    target.write_text('{"step": 0}\n')
    number = getattr(errno, code)

    def failing_fsync(fd):
        raise OSError(number, os.strerror(number))

    monkeypatch.setattr(fsio.os, "fsync", failing_fsync)
    with pytest.raises(UserError) as e:
        fsio.atomic_write(target, '{"step": 0}\n{"step": 2}\n')
    assert str(e.value) == f"cannot write {target}: {os.strerror(number)} ({code})"
    assert target.read_text() == '{"step": 0}\n' and sorted(p.name for p in tmp_path.iterdir()) == [target.name]
