"""Shared test setup: one torch thread (the CI box has 2 cores) and deterministic seeds."""

import os
import sys

import pytest
import torch

torch.set_num_threads(1)
sys.path.insert(0, os.path.dirname(__file__))  # test helpers (video_factory, tiny_models) import as plain modules


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
