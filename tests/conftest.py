import os
import shutil
import sys
from pathlib import Path

# The suite behaves the same whatever the user's Hugging Face settings: it never reaches a hub, and the progress
# bars of datasets and huggingface_hub are left to the code under test (their HF_*_DISABLE_PROGRESS_BARS variables
# override the code's own enable/disable calls). Both libraries read these variables when imported, so they are set
# before anything imports them; the tests' subprocesses inherit them.
FORCED_ENVIRONMENT = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
CLEARED_ENVIRONMENT = ("HF_DATASETS_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_PROGRESS_BARS")
os.environ.update(FORCED_ENVIRONMENT)
for _name in CLEARED_ENVIRONMENT:
    os.environ.pop(_name, None)
_imported_early = [name for name in ("huggingface_hub", "datasets") if name in sys.modules]
if _imported_early:
    raise RuntimeError(
        f"{' and '.join(_imported_early)} was imported before tests/conftest.py set the test environment, so it "
        "kept the user's settings (a pytest plugin importing it?); disable that plugin with -p no:NAME"
    )

# One thread per test process: pytest-xdist runs one worker per core, and oversubscribed OpenMP threads
# spin-wait (a tiny model ran ~50x slower with 2 threads on 2 busy cores). Set before torch starts.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

REPO_ROOT = Path(__file__).resolve().parents[1]

# The tests' shared builders (tests/lung_support.py) import as ``lung_support`` from every folder, whatever pytest's
# import mode. A uniquely named module, not ``conftest``: under pytest-xdist ``from conftest import`` can resolve to
# another folder's conftest.
if str(REPO_ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(REPO_ROOT / "tests"))


def shared_root() -> Path:
    """The project's shared folder: ``../shared`` beside the repository, or ``$LUNG_DIFFUSERS_SHARED``."""
    return Path(os.environ.get("LUNG_DIFFUSERS_SHARED", REPO_ROOT.parent / "shared")).resolve()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    root = shared_root()
    if not root.is_dir():
        pytest.fail(
            f"shared data folder not found at {root}; put it beside the repository or set LUNG_DIFFUSERS_SHARED"
        )
    return root


def load_sdm_fixture(name: str):
    """(state_dict, config, io tensors) of one of the official-SDM numeric references in shared/fixtures."""
    import json

    from safetensors.torch import load_file

    folder = shared_root() / "fixtures" / name
    if not folder.is_dir():
        pytest.fail(f"fixture {folder} not found; the shared folder must hold fixtures/{name}")
    config = json.loads((folder / "config.json").read_text())
    return load_file(folder / "weights.safetensors"), config, load_file(folder / "io.safetensors")


@pytest.fixture(scope="session")
def small_reference():
    return load_sdm_fixture("sdm_reference_small")


@pytest.fixture(scope="session")
def rgb_reference():
    return load_sdm_fixture("sdm_reference_rgb")


@pytest.fixture(scope="session")
def tiny_unet(small_reference):
    """The small official reference converted: a real 1-channel, 6-class, learned-variance SDM (32x32)."""
    from lung_diffusers import convert_sdm_checkpoint

    state_dict, config, _ = small_reference
    return convert_sdm_checkpoint(state_dict, config)


@pytest.fixture
def tiny_pipe(tiny_unet):
    from diffusers import DDPMScheduler

    from lung_diffusers import LungSDMPipeline

    pipe = LungSDMPipeline(unet=tiny_unet, scheduler=DDPMScheduler(variance_type="learned_range"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="session")
def reference_labels(small_reference):
    """Two 32x32 label maps with every class present."""
    return small_reference[2]["labels"]


@pytest.fixture(scope="session")
def built_once(tmp_path_factory):
    """``built_once(name, build)``: the folder ``build(folder)`` fills, made once per test session.

    Under pytest-xdist the workers share it (a file lock; the first builds, the others wait and reuse it), so an
    expensive fixture is not rebuilt on each worker its tests are spread over.
    """
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # this session's, shared by its workers
    root = root / "built-once"
    root.mkdir(parents=True, exist_ok=True)

    def get(name: str, build) -> Path:
        folder, done = root / name, root / f"{name}.done"
        with FileLock(str(root / f"{name}.lock")):
            if not done.exists():
                if folder.exists():
                    shutil.rmtree(folder)  # a build that failed on another worker
                folder.mkdir()
                build(folder)
                done.touch()
        return folder

    return get


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for a module's tiny models (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``),
    whatever ``OMP_NUM_THREADS`` says: on a busy machine a second OpenMP thread only waits for a core (x50 slower
    when oversubscribed)."""
    from lung_support import one_thread

    with one_thread():
        yield


@pytest.fixture(scope="session")
def datasets_cache(tmp_path_factory) -> str:
    """A private datasets cache, so tests never read or fill the user's."""
    return str(tmp_path_factory.mktemp("hf-datasets-cache"))


@pytest.fixture
def prior_pipe():
    """A LungRePaintPipeline around a tiny random healthy prior (16 px, learned variance)."""
    from lung_support import repaint_pipe, tiny_prior_unet

    return repaint_pipe(tiny_prior_unet())


@pytest.fixture
def sdm_pipe():
    """A LungRePaintPipeline around a tiny random SDM (16 px, 6 classes)."""
    from lung_support import repaint_pipe, tiny_sdm

    return repaint_pipe(tiny_sdm())


@pytest.fixture(scope="session")
def tiny_recipe(tmp_path_factory) -> Path:
    """lung_support.write_tiny_recipe's dataset: 32-px box chests, healthy and nodule, train and test."""
    from lung_support import write_tiny_recipe

    return write_tiny_recipe(tmp_path_factory.mktemp("tiny-recipe"))


@pytest.fixture(scope="session")
def tiny_prior(tmp_path_factory) -> Path:
    """A tiny random healthy prior saved as a ``DDPMPipeline`` folder."""
    from lung_support import save_tiny_prior

    return save_tiny_prior(tmp_path_factory.mktemp("tiny-prior") / "prior")
