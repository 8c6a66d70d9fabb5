import pytest

from serve.common.errors import Conflict, Unauthorized, Unprocessable
from serve.payments import signing
from serve.payments.domain import (
    TRANSITIONS,
    Kind,
    Order,
    Status,
    advance,
    amount_due,
    refund_amount,
    status_after_refund,
    transition,
)

LEGAL = [
    (Status.PENDING, Status.PROCESSING), (Status.PENDING, Status.COMPLETED),
    (Status.PENDING, Status.FAILED), (Status.PROCESSING, Status.COMPLETED),
    (Status.PROCESSING, Status.FAILED), (Status.COMPLETED, Status.PARTIALLY_REFUNDED),
    (Status.COMPLETED, Status.REFUNDED), (Status.PARTIALLY_REFUNDED, Status.PARTIALLY_REFUNDED),
    (Status.PARTIALLY_REFUNDED, Status.REFUNDED),
]


@pytest.mark.parametrize("current", list(Status))
@pytest.mark.parametrize("target", list(Status))
def test_transition_table(current: Status, target: Status) -> None:
    if (current, target) in LEGAL:
        assert transition(current, target) is target
    else:
        with pytest.raises(Conflict) as caught:
            transition(current, target)
        assert caught.value.slug == "illegal-transition"


def test_final_states_have_no_way_out() -> None:
    assert TRANSITIONS[Status.FAILED] == TRANSITIONS[Status.REFUNDED] == frozenset()


def test_provider_reports_only_move_forward() -> None:
    assert advance(Status.PENDING, Status.COMPLETED) is Status.COMPLETED
    assert advance(Status.COMPLETED, Status.PROCESSING) is None  # late "processing" report
    assert advance(Status.COMPLETED, Status.COMPLETED) is None  # duplicate
    assert advance(Status.FAILED, Status.COMPLETED) is None


def test_amounts_by_kind() -> None:
    order = Order(total=10_000, currency="RUB", prepayment=3_000)
    assert amount_due(order, Kind.FULL, {}) == 10_000
    assert amount_due(order, Kind.PREPAYMENT, {}) == 3_000
    assert amount_due(order, Kind.REMAINDER, {Kind.PREPAYMENT: 3_000}) == 7_000
    with pytest.raises(Conflict, match="after the prepayment"):
        amount_due(order, Kind.REMAINDER, {})
    with pytest.raises(Conflict):
        amount_due(order, Kind.FULL, {Kind.PREPAYMENT: 3_000})
    with pytest.raises(Conflict):
        amount_due(order, Kind.REMAINDER, {Kind.PREPAYMENT: 3_000, Kind.REMAINDER: 7_000})
    with pytest.raises(Unprocessable):
        amount_due(Order(total=500, currency="RUB"), Kind.PREPAYMENT, {})


@pytest.mark.parametrize("total,prepayment", [(0, None), (100, 0), (100, 100), (100, 150)])
def test_invalid_orders(total: int, prepayment: int | None) -> None:
    with pytest.raises(Unprocessable):
        Order(total=total, currency="RUB", prepayment=prepayment)


def test_refunds_never_exceed_the_capture() -> None:
    assert refund_amount(captured=1_000, refunded=0, requested=None) == 1_000
    assert refund_amount(captured=1_000, refunded=400, requested=None) == 600
    assert refund_amount(captured=1_000, refunded=400, requested=600) == 600
    with pytest.raises(Conflict) as caught:
        refund_amount(captured=1_000, refunded=400, requested=601)
    assert caught.value.extensions == {"refundable": 600}
    with pytest.raises(Conflict):
        refund_amount(captured=1_000, refunded=1_000, requested=None)
    with pytest.raises(Unprocessable):
        refund_amount(captured=1_000, refunded=0, requested=0)
    assert status_after_refund(1_000, 600) is Status.PARTIALLY_REFUNDED
    assert status_after_refund(1_000, 1_000) is Status.REFUNDED


def test_webhook_signatures() -> None:
    body = b'{"event_id":"1"}'
    good = signing.sign("secret", 1_000, body)
    signing.verify("secret", "1000", good, body, now=1_010, tolerance_s=300)
    cases = [
        ("1000", good, body + b" ", 1_010, "invalid-signature"),  # tampered body
        ("1000", signing.sign("other", 1_000, body), body, 1_010, "invalid-signature"),
        ("1000", good, body, 2_000, "stale-webhook"),
        (None, good, body, 1_010, "invalid-signature"),
        ("soon", good, body, 1_010, "invalid-signature"),
    ]
    for timestamp, signature, raw, now, slug in cases:
        with pytest.raises(Unauthorized) as caught:
            signing.verify("secret", timestamp, signature, raw, now=now, tolerance_s=300)
        assert caught.value.slug == slug
