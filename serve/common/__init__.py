"""What every deployment shares: request context, problem errors, logging, health checks."""
