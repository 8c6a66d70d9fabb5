"""Settings, bootstrap (Ray, Serve, embedded services) and the ``afisha`` CLI."""
