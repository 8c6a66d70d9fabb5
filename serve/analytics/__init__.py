"""The analytics service (see SPEC: Analytics service)."""
