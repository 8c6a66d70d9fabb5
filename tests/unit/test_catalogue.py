import pytest

from messaging import catalogue


def test_every_consumed_event_is_in_the_catalogue() -> None:
    for keys in catalogue.CONSUMES.values():
        assert set(keys) <= set(catalogue.EVENTS)


def test_spec_reactions_are_routed_to_their_consumers() -> None:
    assert catalogue.consumers_of("payment.completed") == ["event", "notification", "analytics"]
    assert catalogue.consumers_of("registration.created") == ["payment", "notification",
                                                              "analytics"]
    assert catalogue.consumers_of("group.member.added") == ["event"]


def test_unknown_types_and_bad_payloads_are_refused() -> None:
    with pytest.raises(catalogue.UnknownEvent):
        catalogue.validate("user.deleted", {})
    with pytest.raises(catalogue.InvalidPayload, match="user_id"):
        catalogue.validate("user.updated", {"changed": ["email"]})
    with pytest.raises(catalogue.InvalidPayload, match="extra"):
        catalogue.validate("user.updated", {"user_id": "u", "changed": [], "extra": 1})


def test_producers_follow_the_spec_table() -> None:
    assert catalogue.PRODUCERS["group.member.added"] == "user"
    assert catalogue.PRODUCERS["reservation.expired"] == "event"
    assert catalogue.PRODUCERS["payment.refunded"] == "payment"
