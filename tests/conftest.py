import pytest
import torch

# The suite's tensors are small: one thread is faster than two fighting over 2 cores.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_global_rng():
    torch.manual_seed(0)
    yield
