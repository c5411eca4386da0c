"""Shared fixtures. ``helpers`` has the subprocess helpers; ``toy_envs`` the small
environments, registered here for every test (``toy_envs:Chain-v0``, ...)."""

from __future__ import annotations

import pytest
import torch

import toy_envs  # noqa: F401  (registers the toy environments)


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """One torch thread, as every process of the package runs (see asyncrl.run)."""
    torch.set_num_threads(1)
