"""The event service (see SPEC: Event service)."""
