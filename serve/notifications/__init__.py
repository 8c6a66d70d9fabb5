"""The notification service (see SPEC: Notification service)."""
