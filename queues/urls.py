"""Dashboard URLs (namespace ``queues``). Queue names may be ``new``, so fixed pages live outside
``queues/<name>/``."""

from __future__ import annotations

from django.urls import path

from queues import api, views
from queues.metrics import views as metrics_views

app_name = "queues"
urlpatterns = [
    path("", views.overview, name="overview"),
    path("queues/", views.queue_list, name="queue-list"),
    path("new-queue/", views.queue_create, name="queue-create"),
    path("queues/<str:name>/", views.queue_detail, name="queue-detail"),
    path("queues/<str:name>/settings/", views.queue_settings, name="queue-settings"),
    path("queues/<str:name>/pause/", views.queue_pause, name="queue-pause"),
    path("queues/<str:name>/resume/", views.queue_resume, name="queue-resume"),
    path("queues/<str:name>/purge/", views.queue_purge, name="queue-purge"),
    path("queues/<str:name>/delete/", views.queue_delete, name="queue-delete"),
    path("queues/<str:name>/publish/", views.queue_publish, name="queue-publish"),
    path("queues/<str:name>/redrive/", views.queue_redrive, name="queue-redrive"),
    path("queues/<str:name>/messages/", views.message_browser, name="queue-messages"),
    path("queues/<str:name>/dead-letters/", views.dead_letters, name="dead-letters"),
    path("queues/<str:name>/dead-letters/group/", views.dead_letter_group, name="dead-letter-group"),
    path("queues/<str:name>/dead-letters/export/", views.dead_letter_export, name="dead-letter-export"),
    path("messages/", views.message_browser, name="messages"),
    path("messages/bulk/", views.message_bulk, name="message-bulk"),
    path("messages/<int:message_id>/", views.message_detail, name="message-detail"),
    path("messages/<int:message_id>/reveal/", views.message_reveal, name="message-reveal"),
    path("redrives/<int:redrive_id>/stop/", views.redrive_stop, name="redrive-stop"),
    path("workers/", views.worker_list, name="workers"),
    path("audit/", views.audit_log, name="audit"),
    path("database/", views.database, name="database"),
    path("database/sessions/<int:pid>/end/", views.database_session_end, name="database-session-end"),
    path("bulk-queues/", views.queue_bulk, name="queue-bulk"),
    path("workers/<int:worker_id>/stop/", views.worker_stop, name="worker-stop"),
    path("schedules/", views.schedule_list, name="schedules"),
    path("schedules/new/", views.schedule_create, name="schedule-create"),
    path("schedules/preview/", views.schedule_preview, name="schedule-preview"),
    path("schedules/<str:name>/edit/", views.schedule_edit, name="schedule-edit"),
    path("schedules/<str:name>/pause/", views.schedule_pause, name="schedule-pause"),
    path("schedules/<str:name>/resume/", views.schedule_resume, name="schedule-resume"),
    path("schedules/<str:name>/run/", views.schedule_run, name="schedule-run"),
    path("schedules/<str:name>/delete/", views.schedule_delete, name="schedule-delete"),
    path("metrics", metrics_views.metrics, name="metrics"),
    # --- live layer: "live" adds the /api/series/ route (queues/api.py) on the line below -----------
    path("api/series/", api.series, name="api-series"),
    # The dashboard's WebSocket (queues.routing): named here so pages and the ASGI routes follow the mount.
    path("ws/dashboard/", views.websocket_endpoint, name="ws-dashboard"),
    # --- end of live layer ------------------------------------------------------------------------
]
