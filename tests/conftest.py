import pytest
import torch

# The suite's tensors are small: one thread is faster than two fighting over 2 cores.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_global_rng():
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True, scope="session")
def _classifier_cache(tmp_path_factory):
    """Image runs train the FID / KID classifier once per session into a temporary cache,
    never into the user's ~/.cache/ebmlab."""
    mp = pytest.MonkeyPatch()
    mp.setenv("EBMLAB_CACHE_DIR", str(tmp_path_factory.mktemp("ebmlab-cache")))
    yield
    mp.undo()
