"""Domain events: envelope and catalogue, transactional outbox, relay, transports, consumers."""
