"""Shared test setup: deterministic, single-threaded torch (CI has 2 cores)."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

torch.set_num_threads(1)
