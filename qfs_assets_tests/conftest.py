import atexit
import os
import shutil
import tempfile
import warnings

os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
warnings.filterwarnings("ignore")

# Tests judge by the code defaults: an empty deployment configuration file, never a developer's
# ./qfs-assure.toml. Set before any test module imports the definitions (their run config defaults
# are read then). A test that needs a file points QFS_CONFIG at its own and calls settings.reset().
_CONFIG_DIR = tempfile.mkdtemp(prefix="qfs_config_")
atexit.register(shutil.rmtree, _CONFIG_DIR, True)
EMPTY_CONFIG = os.path.join(_CONFIG_DIR, "qfs-assure.toml")
with open(EMPTY_CONFIG, "w", encoding="utf-8") as _fh:
    _fh.write("# empty: every parameter has its code default\n")
os.environ["QFS_CONFIG"] = EMPTY_CONFIG


import pytest


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """The default demo deployment (all incidents), generated once per test session (~3 s)."""
    from qfs_assets.demo import DemoConfig, generate

    return generate(tmp_path_factory.mktemp("demo"), DemoConfig())


@pytest.fixture(scope="session", autouse=True)
def _isolated_dagster_home(tmp_path_factory):
    """CLI calls in tests record their runs in a throwaway instance, never the repository's."""
    home = tmp_path_factory.mktemp("dagster_home")
    previous = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("DAGSTER_HOME", None)
    else:
        os.environ["DAGSTER_HOME"] = previous

