"""The user service (see SPEC: User service)."""
