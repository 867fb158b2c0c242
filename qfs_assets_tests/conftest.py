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
