"""These tests look at a platform that `make cluster` deployed onto a three-node Ray cluster
(tests/multinode/local_cluster.py); they are collected only then."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.conftest import RunningPlatform
from tests.fakes.telegram_api import FakeTelegram

collect_ignore_glob = [] if os.environ.get("AFISHA_E2E_RAY_ADDRESS") else ["test_*.py"]


@pytest.fixture(scope="session")
def platform(bot_api: FakeTelegram) -> RunningPlatform:
    """The deployed platform (its URL, database and exchange as make cluster passes them); its
    health asks the Bot API double, which answers while ``bot_api`` runs."""
    return RunningPlatform(os.environ["AFISHA_E2E_BASE_URL"],
                           Path(os.environ.get("AFISHA_E2E_LOG", os.devnull)),
                           os.environ.get("AFISHA_E2E_EXCHANGE", ""),
                           os.environ["AFISHA_E2E_DATABASE_URL"])
