"""The public HTTP ingress: routing, correlation ids, problem+json errors, health and metrics."""
