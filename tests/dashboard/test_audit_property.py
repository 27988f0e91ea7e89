"""Property: whatever a refused request carries, its audit row is written and reads back made safe.

Generated names, addresses and details include NUL, lone surrogates, non-finite and huge numbers,
deep nesting and long text: the classes that used to make the audit insert itself fail.
"""

from __future__ import annotations

import math
from urllib.parse import quote

import pytest
from django.core.exceptions import PermissionDenied
from hypothesis import given
from hypothesis import strategies as st

from queues import audit, services
from queues.models import AuditEvent
from queues.permissions import Action

pytestmark = [pytest.mark.django_db, pytest.mark.property]

_odd = st.sampled_from(["\x00", "\ud800", "\udfff", "\u2028", "'", '"', "<", "\\"])
TEXT = st.text(alphabet=st.one_of(st.characters(), _odd), max_size=300)
NUMBERS = st.one_of(st.integers(min_value=-(10**30), max_value=10**30), st.floats(allow_nan=True, allow_infinity=True),
                    st.integers(min_value=4400, max_value=6000).map(lambda digits: -(10**digits)))
JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), NUMBERS, TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(TEXT, inner, max_size=5)),
    max_leaves=30,
)


@given(name=TEXT, addr=TEXT, detail=st.dictionaries(TEXT, JSONISH, max_size=6))
def test_a_denied_attempt_is_always_audited(users, name, addr, detail):
    before = AuditEvent.objects.count()
    with pytest.raises(PermissionDenied):
        services.authorize(actor=users["viewer"], action=Action.PURGE_QUEUE, queue=name, remote_addr=addr,
                           detail=detail)
    assert AuditEvent.objects.count() == before + 1
    event = AuditEvent.objects.order_by("-id").first()
    assert event.outcome == "denied"
    assert event.queue_name == audit.clean_text(name, 80)
    assert event.remote_addr == audit.clean_text(addr, 64)
    assert _same(event.detail, audit.clean_json(detail))


def _same(stored: object, sent: object) -> bool:
    """Equal as JSON: jsonb keeps numbers as decimals, so 7.2e16 may read back as an integer."""
    if isinstance(sent, bool) or sent is None or isinstance(sent, str):
        return stored == sent
    if isinstance(sent, int | float):
        return isinstance(stored, int | float) and math.isclose(stored, sent, rel_tol=1e-15, abs_tol=1e-300)
    if isinstance(sent, list):
        return isinstance(stored, list) and len(stored) == len(sent) and all(map(_same, stored, sent))
    assert isinstance(sent, dict)
    return isinstance(stored, dict) and stored.keys() == sent.keys() and all(_same(stored[k], sent[k]) for k in sent)


@given(name=TEXT.filter(lambda s: s.strip("/") != ""))
def test_any_queue_name_in_an_action_url_is_refused_and_audited(client_for, name):
    c = client_for("viewer")
    before = AuditEvent.objects.filter(outcome="denied").count()
    response = c.post(f"/queues/{quote(name.encode('utf-8', 'surrogatepass'), safe='')}/pause/")
    assert response.status_code in (403, 404)  # 404: the path does not match the route at all
    if response.status_code == 403:
        assert AuditEvent.objects.filter(outcome="denied").count() == before + 1
