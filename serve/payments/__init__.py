"""The payment service (see SPEC: Payment service)."""
