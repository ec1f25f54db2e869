"""Shared pytest configuration: deterministic torch on CPU and a GPU marker that skips where there is no GPU."""

from __future__ import annotations

import pytest
import torch

# one thread: the test models are tiny, and two threads on a shared 2-core machine spin against other work
torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU; none is available on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
