"""The operator console: a read-only view of the gateway's state in the browser, at ``/console``.

Server-rendered HTML (Jinja2, autoescaped) with inline SVG charts and one small script; no
CDN, no build step. Pages: the deferred queue, deliveries, tokens, the permission funnel and a
user lookup. Each handler parses its form, calls services, and renders.

Sign-in exchanges an API key with the ``users:read`` scope for a session cookie; the key never
reaches the browser's storage. The console is mounted beside the JSON API, not in its route
table (:data:`gateway.api.routes.ROUTES`): it answers HTML, authenticates by its own cookie, and
is left out of ``/openapi.json``, which describes the JSON API alone.
"""

from gateway.console.app import CONSOLE_PREFIX, CONSOLE_RUNTIME, mount_console

__all__ = ["CONSOLE_PREFIX", "CONSOLE_RUNTIME", "mount_console"]
