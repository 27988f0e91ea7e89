"""The dashboard's pages and action endpoints.

Pages are complete without JavaScript; live updates only refresh the numbers. Reads go through
``queues.selectors``, every change through ``queues.services`` (which checks permission and audits).
A page needs ``queues.view_dashboard``; an action's own permission is checked by its service so a
denied attempt is on record. Bad input answers 400 with the reason on the page, never a 500.

- :mod:`queues.views.pages`: the read-only pages (and the two actions bound to one page).
- :mod:`queues.views.actions`: queue and bulk message actions, confirm on GET, act on POST.
- :mod:`queues.views.schedule_form`: the schedule create/edit form and its preview.
- :mod:`queues.views.common`: the renderers, the ``dashboard_page``/``action_endpoint`` decorators and the
  request checks both share.

``urls.py`` names the views through this package.
"""

from __future__ import annotations

from queues.views.actions import (
    dead_letter_group,
    message_bulk,
    queue_bulk,
    queue_create,
    queue_delete,
    queue_pause,
    queue_publish,
    queue_purge,
    queue_redrive,
    queue_resume,
    queue_settings,
    redrive_stop,
    schedule_delete,
    schedule_pause,
    schedule_resume,
    schedule_run,
    worker_stop,
)
from queues.views.pages import (
    audit_log,
    database,
    database_session_end,
    dead_letter_export,
    dead_letters,
    message_browser,
    message_detail,
    message_reveal,
    overview,
    queue_detail,
    queue_list,
    schedule_list,
    websocket_endpoint,
    worker_list,
)
from queues.views.schedule_form import schedule_create, schedule_edit, schedule_preview

__all__ = [
    "dead_letter_export",
    "dead_letter_group",
    "dead_letters",
    "audit_log",
    "database",
    "database_session_end",
    "message_browser",
    "message_bulk",
    "message_detail",
    "message_reveal",
    "overview",
    "queue_bulk",
    "queue_create",
    "queue_delete",
    "queue_detail",
    "queue_list",
    "queue_pause",
    "queue_publish",
    "queue_purge",
    "queue_redrive",
    "queue_resume",
    "queue_settings",
    "redrive_stop",
    "schedule_create",
    "schedule_delete",
    "schedule_edit",
    "schedule_list",
    "schedule_pause",
    "schedule_preview",
    "schedule_resume",
    "schedule_run",
    "websocket_endpoint",
    "worker_list",
    "worker_stop",
]
