"""Test setup. TRITON_INTERPRET must be set before triton is first imported, so it is set here, at the top,
before anything imports attnkit's kernels: the Triton kernels then run on CPU through the interpreter."""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")
# Two CI cores are shared by two pytest workers; more torch threads per worker only thrash.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
