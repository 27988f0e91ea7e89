"""Who may do what on the dashboard: roles are Django permissions on ``Queue``.

| permission                | allows                                                            |
|---------------------------|-------------------------------------------------------------------|
| ``queues.view_dashboard`` | every page, revealing hidden bodies (audited)                     |
| ``queues.operate_queues`` | pause, resume, retry, move, redrive, edit settings, create queues, |
|                           | cancel messages, ask a worker to stop                             |
|                           | create, pause, resume, run and delete schedules                   |
| ``queues.purge_queues``   | purge queues, delete messages, delete queues, shorten retention,  |
|                           | end a database session that holds vacuum back (Database page)     |
| ``queues.publish_messages`` | publish messages                                                |

Creating a queue needs ``operate_queues``: it adds capacity but destroys nothing, like editing
settings. The one setting that destroys messages, a shorter retention (the next prune deletes what
is older), is its own action and needs ``purge_queues`` like purging
(:class:`queues.selectors.SettingsImpact` says why the other settings destroy nothing).
Searching message bodies (``body.PATH:VALUE``) is refused while ``MQADMIN["HIDE_BODIES"]`` is set:
each search would confirm a guessed value without the audited reveal. Every action also needs
``view_dashboard`` (one cannot act on what one cannot see).
Superusers have all of them. ``MQADMIN["READ_ONLY"]`` denies every dashboard action to everyone,
superusers included; pages and reveals still work (a reveal changes no queue).

The ``mq_*`` commands act as a :class:`CommandLineActor` (``cli:alice@host``): it holds every
permission and is not bound by ``READ_ONLY``, because whoever can run ``manage.py`` can already reach
the database with its credentials; a Django permission check there would only pretend. What the
command line does gain from the services is the same audit row as the dashboard's, refusals included.

The roles are plain permissions so a project can grant them however it likes; :func:`ensure_role_groups`
makes ready-made groups for tests and the demo.
"""

from __future__ import annotations

import getpass
import socket
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from django.core.exceptions import PermissionDenied

from queues import conf

VIEW = "queues.view_dashboard"
OPERATE = "queues.operate_queues"
PURGE = "queues.purge_queues"
PUBLISH = "queues.publish_messages"


class Action(StrEnum):
    """Every operator action the dashboard offers; the value is what the audit log records."""

    PAUSE_QUEUE = "pause_queue"
    RESUME_QUEUE = "resume_queue"
    UPDATE_QUEUE_SETTINGS = "update_queue_settings"
    PURGE_QUEUE = "purge_queue"
    DELETE_MESSAGES = "delete_messages"
    RETRY_MESSAGES = "retry_messages"
    MOVE_MESSAGES = "move_messages"
    START_REDRIVE = "start_redrive"
    STOP_REDRIVE = "stop_redrive"
    PUBLISH_MESSAGE = "publish_message"
    CREATE_QUEUE = "create_queue"
    DELETE_QUEUE = "delete_queue"
    REVEAL_BODY = "reveal_body"
    SHORTEN_RETENTION = "shorten_retention"
    SEARCH_BODIES = "search_bodies"
    CANCEL_BACKEND = "cancel_backend"
    STOP_WORKER = "stop_worker"
    SAVE_SCHEDULE = "save_schedule"
    PAUSE_SCHEDULE = "pause_schedule"
    RESUME_SCHEDULE = "resume_schedule"
    RUN_SCHEDULE = "run_schedule"
    DELETE_SCHEDULE = "delete_schedule"
    CANCEL_MESSAGES = "cancel_messages"


# The one table of which permission each action needs.
REQUIRED: dict[Action, str] = {
    Action.PAUSE_QUEUE: OPERATE,
    Action.RESUME_QUEUE: OPERATE,
    Action.UPDATE_QUEUE_SETTINGS: OPERATE,
    Action.RETRY_MESSAGES: OPERATE,
    Action.MOVE_MESSAGES: OPERATE,
    Action.START_REDRIVE: OPERATE,
    Action.STOP_REDRIVE: OPERATE,
    Action.CREATE_QUEUE: OPERATE,
    Action.PURGE_QUEUE: PURGE,
    Action.DELETE_MESSAGES: PURGE,
    Action.DELETE_QUEUE: PURGE,
    Action.PUBLISH_MESSAGE: PUBLISH,
    Action.REVEAL_BODY: VIEW,
    Action.SHORTEN_RETENTION: PURGE,
    Action.SEARCH_BODIES: VIEW,
    # Ending another program's database session can destroy its uncommitted work.
    Action.CANCEL_BACKEND: PURGE,
    # A stop is graceful: the worker finishes what it holds, nothing is lost; like pausing a queue.
    Action.STOP_WORKER: OPERATE,
    # Schedules add messages on a clock and destroy none: operating, like pausing or creating queues.
    Action.SAVE_SCHEDULE: OPERATE,
    Action.PAUSE_SCHEDULE: OPERATE,
    Action.RESUME_SCHEDULE: OPERATE,
    Action.RUN_SCHEDULE: OPERATE,
    Action.DELETE_SCHEDULE: OPERATE,
    # Like retry and move: the message is not gone unseen, it is counted and audited as cancelled.
    Action.CANCEL_MESSAGES: OPERATE,
}

# Actions that read rather than change queues: allowed even when the dashboard is read-only.
READS = frozenset({Action.REVEAL_BODY, Action.SEARCH_BODIES})

ROLE_GROUPS: dict[str, tuple[str, ...]] = {
    "mq viewers": (VIEW,),
    "mq operators": (VIEW, OPERATE),
    "mq purgers": (VIEW, OPERATE, PURGE),
    "mq publishers": (VIEW, PUBLISH),
    "mq admins": (VIEW, OPERATE, PURGE, PUBLISH),
}


@dataclass(frozen=True)
class CommandLineActor:
    """Who runs an ``mq_*`` command, as services and the audit log see them: ``cli:<OS user>@<host>``.

    It quacks like an authenticated Django user (``is_authenticated``, ``has_perm``, ``get_username``)
    so the services treat it like one, but it has no row in the user table: audit rows name it in
    ``actor_name`` with an empty ``actor``.
    """

    name: str
    is_authenticated = True
    is_active = True
    pk = None

    @classmethod
    def current(cls) -> CommandLineActor:
        """The actor for this process: the OS user and host name (``cli`` alone if neither is known)."""
        try:
            user = getpass.getuser()
        except Exception:  # no user name in some containers (no $USER, uid without a passwd entry)
            user = ""
        host = socket.gethostname()
        return cls(f"cli:{user}@{host}" if user and host else f"cli:{user or host}".rstrip(":"))

    def get_username(self) -> str:
        """The name the audit log shows."""
        return self.name

    def has_perm(self, perm: str) -> bool:
        """Every permission: shell access to the project already means access to its database."""
        return True


def is_read_only() -> bool:
    """True when ``MQADMIN["READ_ONLY"]`` disables every action."""
    return bool(conf.get("READ_ONLY"))


def can_view(user: Any) -> bool:
    """May ``user`` see the dashboard at all?"""
    return bool(user is not None and user.is_active and user.has_perm(VIEW))


def denial_reason(user: Any, action: Action) -> str | None:
    """Why ``user`` may not do ``action`` right now, or None if they may."""
    if action not in READS and is_read_only() and not isinstance(user, CommandLineActor):
        return "the dashboard is read-only (MQADMIN['READ_ONLY'] is set): no action can change queues"
    if user is None or not user.is_authenticated or not user.is_active:
        return "log in first"
    needed = REQUIRED[action]
    if not (user.has_perm(VIEW) and user.has_perm(needed)):
        if action is Action.SHORTEN_RETENTION:
            return (f"shortening a queue's retention deletes the messages older than the new retention, so it "
                    f"needs the permission {needed!r} like purging; ask an administrator")
        return f"{action.value.replace('_', ' ')} needs the permission {needed!r}; ask an administrator"
    if action is Action.SEARCH_BODIES and conf.get("HIDE_BODIES"):
        return ("message bodies are hidden on this dashboard (MQADMIN['HIDE_BODIES']), so searching them by value "
                "is refused: each search would tell whether a guessed value is there. Open a message and reveal "
                "its body instead (the reveal is audited)")
    return None


def can(user: Any, action: Action) -> bool:
    """May ``user`` do ``action`` now (permission and read-only mode both considered)?"""
    return denial_reason(user, action) is None


def check(user: Any, action: Action) -> None:
    """Raise ``PermissionDenied`` with the reason if ``user`` may not do ``action``."""
    reason = denial_reason(user, action)
    if reason is not None:
        raise PermissionDenied(reason)


def capabilities(user: Any) -> dict[str, bool]:
    """What the UI should offer ``user``: one flag per action (``{"pause_queue": True, ...}``)."""
    return {action.value: can(user, action) for action in Action}


def ensure_role_groups() -> dict[str, Any]:
    """Create (or fix up) the groups of :data:`ROLE_GROUPS`; return them by name.

    Not a migration on purpose: projects decide their own groups; tests and the demo use these.
    """
    # deferred: only tests and the demo call this; at the top it would make every importer of the
    # permission table (URL modules, consumers) need the auth app's models loaded first
    from django.contrib.auth.models import Group, Permission

    groups = {}
    for name, perms in ROLE_GROUPS.items():
        group, _ = Group.objects.get_or_create(name=name)
        codenames = [p.split(".", 1)[1] for p in perms]
        group.permissions.set(Permission.objects.filter(content_type__app_label="queues", codename__in=codenames))
        groups[name] = group
    return groups
