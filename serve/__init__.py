"""Ray Serve deployments: the gateway and the six services."""
