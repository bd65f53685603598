"""pushgate: the I/O side of the push gateway (HTTP API, storage, delivery, providers, CLI)."""
