import os
import warnings

os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
warnings.filterwarnings("ignore")


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
