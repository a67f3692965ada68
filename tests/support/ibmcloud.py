"""Fixtures: a running IBM Cloud fake, and clients of the project's adapters pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.ibmcloud import FakeIbmCloud


@pytest.fixture
def ibmcloud_fake() -> Iterator[FakeIbmCloud]:
    """A fresh fake per test (starting one takes milliseconds). Instance hooks are joined and
    their failures raised at teardown, so an emulated VSI cannot fail unnoticed."""
    with FakeIbmCloud() as fake:
        yield fake
        fake.join_hooks()
        fake.check_hooks()
