"""The Django admin for mqadmin's tables: read-mostly.

Every change to queues and messages goes through ``queues.services`` (permission, engine, audit), so
the admin edits nothing directly: a row deleted here would skip the live counters and the audit log.
The Queue list has pause / resume / purge actions; each confirms on a GET page and acts on POST
through the services. Users with ``queues.view_dashboard`` may look at these tables as well.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import OuterRef, QuerySet, Subquery, Sum
from django.db.models.constants import LOOKUP_SEP
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.functional import cached_property

from queues import conf, engine, services, validation
from queues.models import (
    AuditEvent,
    Message,
    Queue,
    QueueCounter,
    Redrive,
    Schedule,
    Subscription,
    TaskResult,
    Topic,
    Worker,
)
from queues.permissions import VIEW, Action, can, check


class ReadOnlyAdmin(admin.ModelAdmin):
    """Look, do not touch: no add, change or delete; dashboard viewers may look too."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(VIEW) or super().has_view_permission(request, obj)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """The list, unless a parameter would make its query fail: 400 with the reason instead of a 500."""
        problem = _bad_changelist_parameter(request)
        if problem is not None:
            return HttpResponseBadRequest(f"{problem}\n", content_type="text/plain; charset=utf-8")
        return super().changelist_view(request, extra_context)


# A date drill-down's parts, bounded as Python's dates are (the admin builds a date from them).
_DATE_PARTS = {"year": (1, 9999), "month": (1, 12), "day": (1, 31)}


def _bad_changelist_parameter(request: HttpRequest) -> str | None:
    """Why a changelist's query string cannot be run (a NUL in a filter, year 2147483648), or None."""
    problem = validation.unstorable_parameter(request.GET.lists())
    if problem is not None:
        return f"{problem}: remove it and try again"
    for key, value in request.GET.items():
        field, _, part = key.rpartition("__")
        if field and part in _DATE_PARTS:
            low, high = _DATE_PARTS[part]
            try:
                validation.parse_int(value, key, minimum=low, maximum=high)
            except validation.InvalidInput as exc:
                return str(exc)
    return None


class EstimatedCountPaginator(Paginator):
    """Unfiltered lists of the message table use PostgreSQL's row estimate instead of ``count(*)``."""

    @cached_property
    def count(self) -> int:
        qs = self.object_list
        if isinstance(qs, QuerySet) and not qs.query.where:
            with conf.db().cursor() as cur:
                cur.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                            [qs.model._meta.db_table])
                row = cur.fetchone()
            if row and row[0] >= 10_000:
                return int(row[0])
        return super().count


# -- queues -----------------------------------------------------------------------------------------
ADMIN_ACTIONS = {
    "pause": (Action.PAUSE_QUEUE, "Pause", "Paused"),
    "resume": (Action.RESUME_QUEUE, "Resume", "Resumed"),
    "purge": (Action.PURGE_QUEUE, "Purge", "Purged"),
}


@admin.register(Queue)
class QueueAdmin(ReadOnlyAdmin):
    """Queues with their live depth; pause, resume and purge go through the services."""

    list_display = ("name", "kind", "paused", "depth", "dead_letter_queue", "visibility_timeout", "max_receives")
    list_filter = ("kind", "paused")
    search_fields = ("name",)
    actions = ["pause_queues", "resume_queues", "purge_queues"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Queue]:
        depth = (
            QueueCounter.objects.filter(queue=OuterRef("pk")).values("queue").annotate(total=Sum("depth"))
            .values("total")
        )
        return super().get_queryset(request).select_related("dead_letter_queue").annotate(_depth=Subquery(depth))

    @admin.display(description="messages", ordering="_depth")
    def depth(self, obj: Queue) -> int:
        """Live messages in the queue (from the counters, not a count)."""
        return getattr(obj, "_depth", None) or 0

    # Actions: gather the selection, then confirm on a GET page of our own.
    def _redirect_to_confirm(self, verb: str, queryset: QuerySet[Queue]) -> HttpResponse:
        names = list(queryset.order_by("name").values_list("name", flat=True))
        query = urlencode({"action": verb, "name": names}, doseq=True)
        return HttpResponseRedirect(reverse("admin:queues_queue_confirm") + "?" + query)

    def has_operate_permission(self, request: HttpRequest) -> bool:
        """May pause and resume (``queues.operate_queues``, not in read-only mode)."""
        return can(request.user, Action.PAUSE_QUEUE)

    def has_purge_permission(self, request: HttpRequest) -> bool:
        """May purge (``queues.purge_queues``, not in read-only mode)."""
        return can(request.user, Action.PURGE_QUEUE)

    @admin.action(description="Pause selected queues…", permissions=["operate"])
    def pause_queues(self, request: HttpRequest, queryset: QuerySet[Queue]) -> HttpResponse:
        """Confirm, then pause."""
        return self._redirect_to_confirm("pause", queryset)

    @admin.action(description="Resume selected queues…", permissions=["operate"])
    def resume_queues(self, request: HttpRequest, queryset: QuerySet[Queue]) -> HttpResponse:
        """Confirm, then resume."""
        return self._redirect_to_confirm("resume", queryset)

    @admin.action(description="Purge selected queues…", permissions=["purge"])
    def purge_queues(self, request: HttpRequest, queryset: QuerySet[Queue]) -> HttpResponse:
        """Confirm, then purge."""
        return self._redirect_to_confirm("purge", queryset)

    def get_urls(self) -> list:
        urls = super().get_urls()
        confirm = path("confirm-action/", self.admin_site.admin_view(self.confirm_view), name="queues_queue_confirm")
        return [confirm, *urls]

    def confirm_view(self, request: HttpRequest) -> HttpResponse:
        """GET: what the action will do to which queues; POST: do it through the services."""
        data = request.GET if request.method == "GET" else request.POST
        verb = data.get("action", "")
        if verb not in ADMIN_ACTIONS:
            raise PermissionDenied(f"unknown queue action {verb!r}")
        action, label, past = ADMIN_ACTIONS[verb]
        changelist = reverse("admin:queues_queue_changelist")
        names = data.getlist("name")
        if request.method == "GET":
            check(request.user, action)
            context = {
                **self.admin_site.each_context(request), "title": f"{label} queues", "opts": self.model._meta,
                "verb": verb, "label": label, "changelist": changelist, "rows": [],
            }
            try:
                for name in names:
                    engine.validate_name(name)
            except ValueError as exc:
                context["error"] = str(exc)
                return TemplateResponse(request, "admin/queues/queue/action_confirm.html", context, status=400)
            stats = {s.queue: s for s in engine.stats(names)} if names else {}
            context["rows"] = [(n, stats.get(n)) for n in names]
            return TemplateResponse(request, "admin/queues/queue/action_confirm.html", context)
        if request.method != "POST":
            return HttpResponse(status=405, headers={"Allow": "GET, POST"})
        addr = request.META.get("REMOTE_ADDR", "")
        # A purge is confirmed per queue by typing its name, as on the dashboard: one click must not
        # empty several queues. The service refuses (and audits) the ones not typed.
        typed = set(data.get("confirm", "").replace(",", " ").split())
        done, failed = [], []
        for name in names:
            try:
                if verb == "pause":
                    services.pause_queue(actor=request.user, queue=name, remote_addr=addr)
                elif verb == "resume":
                    services.resume_queue(actor=request.user, queue=name, remote_addr=addr)
                else:
                    n = services.purge_queue(actor=request.user, queue=name, confirm=name if name in typed else "",
                                             remote_addr=addr)
                    name = f"{name} ({n:,} messages)"
                done.append(name)
            except services.ActionFailed as exc:
                failed.append(f"{name}: {exc}")
        if done:
            self.message_user(request, f"{past}: {', '.join(done)}.", messages.SUCCESS)
        for line in failed:
            self.message_user(request, line, messages.ERROR)
        return HttpResponseRedirect(changelist)


# -- messages ---------------------------------------------------------------------------------------
@admin.register(Message)
class MessageAdmin(ReadOnlyAdmin):
    """Messages, read-only (bodies left out when ``HIDE_BODIES`` is set). Act on them from the dashboard."""

    list_display = ("id", "queue", "priority", "group_key", "receive_count", "enqueued_at", "available_at",
                    "leased_until")
    list_select_related = ("queue",)
    list_filter = ("queue",)
    search_fields = ("=id", "=dedup_id", "=group_key")
    ordering = ("-id",)
    paginator = EstimatedCountPaginator
    show_full_result_count = False

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = [f.name for f in Message._meta.fields]
        if conf.get("HIDE_BODIES"):
            fields.remove("body")
        return fields

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        """Refuse (400, audited) lookups on hidden bodies: ``?body__card__startswith=4`` would read them
        a prefix at a time. Search fields, filters and sortable columns never include the body."""
        if lookup.split(LOOKUP_SEP, 1)[0] == "body" and conf.get("HIDE_BODIES"):
            try:
                services.authorize(actor=request.user, action=Action.SEARCH_BODIES,
                                   remote_addr=request.META.get("REMOTE_ADDR", ""),
                                   # The lookup, never its value: that may be the secret itself.
                                   detail={"via": "admin", "lookup": lookup})
            except PermissionDenied:
                pass
            return False
        return super().lookup_allowed(lookup, value, request)


@admin.register(Worker)
class WorkerAdmin(ReadOnlyAdmin):
    """Worker heartbeat rows."""

    list_display = ("name", "host", "pid", "state", "concurrency", "processed", "failed", "in_flight", "last_beat_at")
    list_filter = ("state", "host")
    search_fields = ("name", "host")


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """The audit log, read-only."""

    list_display = ("at", "actor_name", "action", "queue_name", "count", "outcome", "remote_addr")
    list_filter = ("action", "outcome")
    search_fields = ("actor_name", "queue_name")
    date_hierarchy = "at"


@admin.register(Redrive)
class RedriveAdmin(ReadOnlyAdmin):
    """Redrives and their progress; start and stop them from the dashboard."""

    list_display = ("id", "source", "destination", "state", "moved", "total", "rate", "requested_by", "created_at")
    list_filter = ("state",)
    list_select_related = ("source", "destination")


@admin.register(TaskResult)
class TaskResultAdmin(ReadOnlyAdmin):
    """``django.tasks`` results."""

    list_display = ("id", "task_path", "queue_name", "status", "attempts", "enqueued_at", "finished_at")
    list_filter = ("status", "queue_name")
    search_fields = ("=id", "task_path")


class SubscriptionInline(admin.TabularInline):
    """A topic's subscriptions, read-only."""

    model = Subscription
    extra = 0
    can_delete = False
    readonly_fields = ("queue", "filter")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(VIEW) or super().has_view_permission(request, obj)


@admin.register(Topic)
class TopicAdmin(ReadOnlyAdmin):
    """Topics and the queues subscribed to them."""

    list_display = ("name", "created_at")
    search_fields = ("name",)
    inlines = [SubscriptionInline]


@admin.register(Subscription)
class SubscriptionAdmin(ReadOnlyAdmin):
    """Subscriptions of queues to topics."""

    list_display = ("topic", "queue", "filter")
    list_select_related = ("topic", "queue")


@admin.register(Schedule)
class ScheduleAdmin(ReadOnlyAdmin):
    """Periodic schedules, read-only: change them with ``mq_schedule`` or ``queues.schedule()``, pause, resume,
    run or delete them on the dashboard's Schedules page (all audited)."""

    list_display = ("name", "cron", "timezone", "queue", "task_path", "paused", "next_run_at", "last_run_at", "source")
    list_filter = ("paused", "source")
    search_fields = ("name", "queue", "task_path")
