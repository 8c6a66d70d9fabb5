import pytest

from cluster.settings import SERVICES, Settings, normalize_database_url, schema_of
from tests.conftest import make_settings


def test_every_service_has_its_own_schema() -> None:
    assert [schema_of(s) for s in SERVICES] == [
        "user_service", "event_service", "payment_service",
        "notification_service", "media_service", "analytics_service",
    ]
    with pytest.raises(ValueError, match="unknown service"):
        schema_of("billing")


def test_per_service_database_url_wins_over_the_shared_one() -> None:
    settings = make_settings(database_url="postgresql://db/shared",
                             payment_database_url="postgres://pay-db/payments")
    assert settings.database_url_for("payment") == "postgresql+asyncpg://pay-db/payments"
    assert settings.database_url_for("event") == "postgresql+asyncpg://db/shared"


def test_missing_database_names_the_variables_to_set() -> None:
    settings = make_settings()
    assert not settings.has_database()
    with pytest.raises(LookupError, match="AFISHA_USER_DATABASE_URL"):
        settings.database_url_for("user")


def test_environment_with_prefix_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AFISHA_ADMIN_EMAILS", "Boss@Example.com, ops@example.com ,")
    monkeypatch.setenv("AFISHA_HTTP_PORT", "9090")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.admin_emails == ["boss@example.com", "ops@example.com"]
    assert settings.http_port == 9090
    assert settings.http_host == "127.0.0.1"
    assert settings.transport == "embedded"


def test_dotenv_file_is_read(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = tmp_path / ".env"
    env.write_text("AFISHA_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/\n")
    settings = Settings(_env_file=env)  # type: ignore[call-arg]
    assert settings.transport == "rabbitmq"


def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AFISHA_HTTP_PORT", "70000")
    with pytest.raises(ValueError, match="http_port"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_runtime_round_trip_ignores_the_replica_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(database_url="postgresql://db/x", reservation_ttl_seconds=60)
    monkeypatch.setenv("AFISHA_RESERVATION_TTL_SECONDS", "5")
    again = Settings.from_runtime(settings.to_runtime())
    assert again == settings


def test_url_normalisation_keeps_other_schemes() -> None:
    assert normalize_database_url("postgresql://u@h/d") == "postgresql+asyncpg://u@h/d"
    assert normalize_database_url("sqlite:///x") == "sqlite:///x"
