"""Production fails closed: the sandbox only by choice or on embedded defaults, and
``afisha deploy`` starts only with every secret given (it generates none)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cluster import bootstrap
from cluster.cli import app
from tests.conftest import make_settings

COMPLETE = {"database_url": "postgresql://db.internal/afisha", "payment_provider": "yookassa",
            "jwt_secret": "j" * 48, "ticket_signing_key": "t" * 48,
            "yookassa_shop_id": "1", "yookassa_secret_key": "live_x"}


def test_deploy_lists_everything_it_needs() -> None:
    missing = bootstrap.deploy_problems(make_settings())
    assert [m.split()[0] for m in missing] == [
        "AFISHA_DATABASE_URL", "AFISHA_PAYMENT_PROVIDER", "AFISHA_JWT_SECRET",
        "AFISHA_TICKET_SIGNING_KEY"]
    assert bootstrap.deploy_problems(make_settings(**COMPLETE)) == []
    sandbox = make_settings(**{**COMPLETE, "payment_provider": "sandbox"})
    assert bootstrap.deploy_problems(sandbox) == ["AFISHA_SANDBOX_WEBHOOK_SECRET"]
    keys = make_settings(**{**COMPLETE, "jwt_algorithm": "RS256", "jwt_secret": None})
    assert bootstrap.deploy_problems(keys) == ["AFISHA_JWT_PRIVATE_KEY and AFISHA_JWT_PUBLIC_KEY"]
    shop = make_settings(**{**COMPLETE, "yookassa_secret_key": None})
    assert bootstrap.deploy_problems(shop) == [
        "AFISHA_YOOKASSA_SHOP_ID and AFISHA_YOOKASSA_SECRET_KEY"]


def test_deploy_refuses_before_touching_a_cluster(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    for name in list(os.environ):
        if name.startswith("AFISHA_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AFISHA_DATA_DIR", str(tmp_path / "data"))
    result = CliRunner().invoke(app, ["deploy", "--address", "ray://nowhere:10001"])
    assert result.exit_code == 2
    assert "AFISHA_PAYMENT_PROVIDER" in result.output and "AFISHA_JWT_SECRET" in result.output
    assert not (tmp_path / "data").exists()  # nothing generated


def test_the_sandbox_is_chosen_or_embedded_only() -> None:
    configured = bootstrap.Platform(make_settings(database_url="postgresql://db/afisha"))
    with pytest.raises(bootstrap.StartupError, match="AFISHA_PAYMENT_PROVIDER is not set"):
        bootstrap.resolve_provider(configured.settings, configured)
    chosen = make_settings(database_url="postgresql://db/afisha", payment_provider="sandbox")
    assert bootstrap.resolve_provider(chosen, configured).payment_provider == "sandbox"
    embedded = bootstrap.Platform(make_settings())
    embedded.embedded_pg = object()  # type: ignore[assignment]  # afisha run started one
    resolved = bootstrap.resolve_provider(embedded.settings, embedded)
    assert resolved.payment_provider == "sandbox"
    assert any("sandbox" in note for note in embedded.notes)


def test_run_keeps_a_ticket_key_of_its_own(tmp_path: Path) -> None:
    settings = bootstrap.resolve_secrets(make_settings(data_dir=tmp_path))
    again = bootstrap.resolve_secrets(make_settings(data_dir=tmp_path))
    assert settings.ticket_signing_key and settings.ticket_signing_key == again.ticket_signing_key
    assert settings.ticket_signing_key != settings.jwt_secret
