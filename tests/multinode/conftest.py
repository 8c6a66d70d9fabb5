"""These tests look at a platform that `make cluster` deployed onto a three-node Ray cluster
(tests/multinode/local_cluster.py); they are collected only then."""

from __future__ import annotations

import os

collect_ignore_glob = [] if os.environ.get("AFISHA_E2E_RAY_ADDRESS") else ["test_*.py"]
