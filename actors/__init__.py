"""Ray actors: per-event ticket inventory (pure core in serve/events/domain.py, thin actor here)."""
