"""The speedrun measure's pieces (attnkit.results.speedrun); its processes run in tests/results/test_reproduce.py
(`attnkit reproduce --model gpt --flavor debug`) and tests/benchmarks/test_smoke.py (benchmarks/speedrun.py)."""
from __future__ import annotations

import pytest
import torch

from attnkit.results import speedrun


class Recorder(torch.nn.Module):
    """model(x, y) -> (None, loss) as nanoGPT's GPT and ours answer; keeps what it was given."""
    def forward(self, x, y):
        self.x, self.y = x, y
        return None, y.float().mean()


@pytest.mark.parametrize("block, T", [(128, 64), (64, 64), (32, 32)])
def test_common_loss_reads_the_whole_split_in_consecutive_windows(block, T):
    val = torch.arange(1000)
    model = Recorder()
    loss = speedrun.common_loss(model, val, block)
    n = 999 // T
    assert model.x.shape == (n, T) and torch.equal(model.x.flatten(), val[: n * T])
    assert torch.equal(model.y, model.x + 1)  # each window's next tokens
    assert loss == pytest.approx(float(model.y.float().mean()))


def test_time_to_and_speedup_read_the_first_row_at_or_below_the_baselines_final_loss():
    base = [dict(wall_s=40.0, val_loss=2.0), dict(wall_s=80.0, val_loss=1.6, common_loss=1.55)]
    rows = [dict(wall_s=5.0, val_loss=1.5, common_loss=None), dict(wall_s=10.0, val_loss=1.7, common_loss=1.6),
            dict(wall_s=20.0, val_loss=1.6, common_loss=1.55)]
    assert speedrun.time_to(rows, 1.55, "common_loss") == 20.0
    assert speedrun.speedup(base, rows) == 80.0 / 20.0
    assert speedrun.speedup(base, rows, "val_loss") == 80.0 / 5.0
    assert speedrun.speedup(base, rows[:2]) is None


def test_nanogpt_is_vendored_whole_and_its_debug_recipe_overrides_the_cpu_one():
    names = {p.relative_to(speedrun.NANOGPT).as_posix() for p in speedrun.SOURCES[1:]}
    assert {"train.py", "model.py", "configurator.py", "config/train_shakespeare_char.py", "LICENSE"} <= names
    cmd = speedrun.nanogpt_command(speedrun.NANOGPT, speedrun.NANOGPT_FLAVORS["debug"])
    assert cmd[:2] == ["train.py", "config/train_shakespeare_char.py"] and "--max_iters=2000" in cmd
    assert cmd[-len(speedrun.NANOGPT_DEBUG):] == speedrun.NANOGPT_DEBUG  # later arguments win in its configurator
