"""``/docs`` (Swagger UI) and ``/redoc`` render in headless Chromium with no internet: their
scripts and styles come from the gateway itself, and the pages list the API's operations."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from serve.gateway.app import create_app
from serve.gateway.services import Services
from tests.browser import offline_chromium, resources
from tests.conftest import make_settings
from tests.fakes.server import running
from tests.unit.test_gateway_app import FakeClient

NAMES = ("user", "event", "payment", "notification", "media", "analytics")


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    """The gateway app on a local port (the pages need no service behind it)."""
    app = create_app(make_settings(), Services(**{n: FakeClient(n) for n in NAMES}))
    with running(app) as url:
        yield url


# ReDoc's bundle shows a small "API docs by Redocly" badge from its CDN: offline that one image
# fails to load and nothing else on the page changes.
REDOC_BADGE = "https://cdn.redoc.ly/redoc/logo-mini.svg"


def only_local(loaded: list[str], base: str, allowed: tuple[str, ...] = ()) -> None:
    assert loaded, "the page loaded nothing"
    assert all(url.startswith(base) or url in allowed for url in loaded), loaded


@pytest.mark.timeout(180)
def test_swagger_ui_lists_the_operations_offline(gateway: str) -> None:
    with offline_chromium() as driver:
        driver.get(f"{gateway}/docs")
        WebDriverWait(driver, 60).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock-summary"))
        operations = {
            (block.find_element(By.CSS_SELECTOR, ".opblock-summary-method").text,
             block.find_element(By.CSS_SELECTOR, ".opblock-summary-path").text.replace(
                 "\u200b", ""))
            for block in driver.find_elements(By.CSS_SELECTOR, ".opblock-summary")}
        loaded = resources(driver)
        title = driver.find_element(By.CSS_SELECTOR, ".info .title").text
    assert "Afisha API" in title
    for operation in (("POST", "/api/v1/events"), ("GET", "/api/v1/events"),
                      ("POST", "/api/v1/events/{event_id}/registrations"),
                      ("GET", "/actuator/health")):
        assert operation in operations, sorted(operations)[:20]
    assert len(operations) > 50
    only_local(loaded, gateway)


@pytest.mark.timeout(180)
def test_redoc_lists_the_operations_offline(gateway: str) -> None:
    with offline_chromium() as driver:
        driver.get(f"{gateway}/redoc")
        WebDriverWait(driver, 60).until(
            lambda d: "Create an event (draft)" in d.find_element(By.TAG_NAME, "body").text)
        text = driver.find_element(By.TAG_NAME, "body").text
        loaded = resources(driver)
    assert "Afisha API" in text
    assert "/api/v1/events/{event_id}/registrations" in text
    only_local(loaded, gateway, allowed=(REDOC_BADGE,))
