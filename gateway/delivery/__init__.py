"""Delivery: the durable queue of deliveries (:mod:`.queue`), the worker that sends them
(:mod:`.worker`) and the providers it sends through, one per app and platform
(:mod:`.providers`)."""
