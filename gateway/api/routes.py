"""Every endpoint of the HTTP API, in one table: the router, the OpenAPI document and the
authentication middleware all read it."""

from __future__ import annotations

from gateway.api import devices, notifications, system, users
from gateway.api.routing import IDEMPOTENCY_HEADER, Route
from gateway.config import Scope
from gateway.schemas import (
    BatchRequest,
    BatchResult,
    DeviceList,
    DeviceOut,
    DeviceRegistration,
    NotificationDetail,
    NotificationOut,
    NotificationPage,
    NotificationRequest,
    PageQuery,
    PreferenceHistory,
    PreferencesOut,
    PreferencesUpdate,
    Problem,
    UserNotificationsQuery,
)

_PREFERENCES = "/v1/users/{user_id}/preferences"

ROUTES: tuple[Route, ...] = (
    Route("GET", "/healthz", system.healthz, "Liveness: the process answers", public=True),
    Route(
        "GET",
        "/readyz",
        system.readyz,
        "Readiness: the database answers and can write (and the delivery worker and the "
        "scheduler run, where this process delivers)",
        responses={200: None, 503: None},
        public=True,
    ),
    Route(
        "GET",
        "/metrics",
        system.metrics,
        "Prometheus metrics",
        content_type="text/plain",
        scopes=(Scope.METRICS,),
    ),
    Route("GET", "/openapi.json", system.openapi, "This OpenAPI 3.1 document"),
    Route(
        "POST",
        "/v1/devices",
        devices.register_device,
        "Register or refresh a device token",
        request_model=DeviceRegistration,
        responses={201: DeviceOut, 200: DeviceOut},
        scopes=(Scope.DEVICES,),
    ),
    Route(
        "GET",
        "/v1/users/{user_id}/devices",
        devices.list_devices,
        "A user's devices and their token status",
        responses={200: DeviceList},
        scopes=(Scope.USERS_READ,),
    ),
    Route(
        "DELETE",
        "/v1/devices/{device_id}",
        devices.unregister_device,
        "Unregister a device",
        responses={204: None},
        scopes=(Scope.DEVICES,),
    ),
    Route(
        "GET",
        _PREFERENCES,
        users.get_preferences,
        "A user's preferences",
        responses={200: PreferencesOut},
        scopes=(Scope.USERS_READ,),
    ),
    Route(
        "PUT",
        _PREFERENCES,
        users.put_preferences,
        "Replace a user's preferences (fields left out return to defaults)",
        request_model=PreferencesUpdate,
        responses={200: PreferencesOut},
        scopes=(Scope.PREFERENCES,),
    ),
    Route(
        "PATCH",
        _PREFERENCES,
        users.patch_preferences,
        "Change the given preference fields",
        request_model=PreferencesUpdate,
        responses={200: PreferencesOut},
        scopes=(Scope.PREFERENCES,),
    ),
    Route(
        "GET",
        _PREFERENCES + "/history",
        users.preference_history,
        "Every change of a user's preferences, newest first: when, by which key, old and new",
        responses={200: PreferenceHistory},
        scopes=(Scope.USERS_READ,),
        query_model=PageQuery,
    ),
    Route(
        "DELETE",
        "/v1/users/{user_id}",
        users.forget_user,
        "Forget a user: devices, preferences, notifications",
        responses={204: None},
        scopes=(Scope.USERS_DELETE,),
    ),
    Route(
        "POST",
        "/v1/notifications",
        notifications.send_notification,
        "Send a notification (classified, checked against consent and quiet hours)",
        request_model=NotificationRequest,
        responses={202: NotificationOut},
        headers=(IDEMPOTENCY_HEADER,),
        scopes=(Scope.SEND,),
    ),
    Route(
        "POST",
        "/v1/notifications/batch",
        notifications.send_batch,
        "Send up to 500 notifications; results in order",
        request_model=BatchRequest,
        responses={200: BatchResult},
        headers=(IDEMPOTENCY_HEADER,),
        scopes=(Scope.SEND,),
    ),
    Route(
        "GET",
        "/v1/notifications/{notification_id}",
        notifications.read_notification,
        "A notification with its deliveries",
        responses={200: NotificationDetail},
        scopes=(Scope.SEND, Scope.USERS_READ),
    ),
    Route(
        "GET",
        "/v1/users/{user_id}/notifications",
        notifications.list_user_notifications,
        "A user's notifications, newest first, a page at a time",
        query_model=UserNotificationsQuery,
        responses={200: NotificationPage},
        scopes=(Scope.USERS_READ,),
    ),
    Route(
        "DELETE",
        "/v1/notifications/{notification_id}",
        notifications.cancel_notification,
        "Cancel a deferred or queued notification",
        responses={200: NotificationOut, 409: Problem},
        scopes=(Scope.SEND,),
    ),
)

OPERATIONS_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
WORKER_ROUTES = tuple(route for route in ROUTES if route.path in OPERATIONS_PATHS)
"""What a worker-only process serves: its health checks and its metrics, nothing else."""
