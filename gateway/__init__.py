"""pushgate: the I/O side of the push gateway (HTTP API, storage, delivery, providers, CLI)."""

import zoneinfo

# Time-zone rules come from the pinned `tzdata` package, not the host's /usr/share/zoneinfo:
# every machine then agrees on when quiet hours end, and the rules move only with a release.
zoneinfo.reset_tzpath([])
