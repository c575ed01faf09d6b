"""Skip a test whose outside requirement is missing, or fail it where CI asks
for that requirement (TRAPD_REQUIRE_SHARED=1, TRAPD_REQUIRE_TOOLS=1)."""

import os

import pytest


def missing(reason: str, required_by: str) -> None:
    if os.environ.get(required_by) == "1":
        pytest.fail(reason)
    pytest.skip(reason)
