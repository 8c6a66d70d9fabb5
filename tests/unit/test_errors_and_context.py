import logging
import pickle

from serve.common.context import RequestContext, accept_correlation_id, bound, correlation_id_var
from serve.common.errors import Conflict, NotFound, ProblemError
from serve.common.logs import CorrelationIdFilter
from serve.common.problems import render, status_of


def test_problem_errors_survive_pickling_with_their_details() -> None:
    error = Conflict("tickets are gone", slug="sold-out", available=0)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is Conflict
    assert render(copy, "/api/v1/events/1/registrations") == {
        "type": "https://afisha.dev/problems/sold-out",
        "title": "Conflict",
        "status": 409,
        "detail": "tickets are gone",
        "instance": "/api/v1/events/1/registrations",
        "available": 0,
    }


def test_subclasses_carry_their_status() -> None:
    assert status_of(NotFound("x")) == (404, "Not found")
    assert isinstance(NotFound("x"), ProblemError)


def test_correlation_id_is_kept_when_sane_and_replaced_otherwise() -> None:
    assert accept_correlation_id("req-42.a:b") == "req-42.a:b"
    for bad in (None, "", "has space", "x" * 129, "semi;colon"):
        generated = accept_correlation_id(bad)
        assert generated != bad
        assert len(generated) == 32


def test_log_records_carry_the_bound_correlation_id() -> None:
    record = logging.LogRecord("afisha.test", logging.INFO, __file__, 1, "hi", None, None)
    with bound(RequestContext(correlation_id="cid-1")):
        CorrelationIdFilter().filter(record)
    assert record.correlation_id == "cid-1"  # type: ignore[attr-defined]
    assert correlation_id_var.get() == "-"


def test_log_records_handed_to_another_logger_keep_their_format_and_given_level() -> None:
    from serve.common.logs import FORMAT, ToLogger

    seen: list[tuple[int, str]] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append((record.levelno, record.getMessage()))

    target = logging.getLogger("test.serve.replica")
    target.propagate = False
    target.addHandler(Keep())
    target.setLevel(logging.DEBUG)
    handler = ToLogger(target, logging.INFO)
    handler.addFilter(CorrelationIdFilter())
    handler.setFormatter(logging.Formatter(FORMAT))
    source = logging.getLogger("test.afisha.part")
    source.propagate = False
    source.addHandler(handler)
    source.warning("seats left: %d", 3)
    [(level, line)] = seen
    assert level == logging.INFO
    assert line.endswith("WARNING test.afisha.part [cid=-] seats left: 3")
