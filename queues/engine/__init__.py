"""The queue engine: PostgreSQL SQL and the Python API. Knows nothing of HTTP or the dashboard.

Where things are: ``validation`` (names, limits, value checks), ``connection`` (the cursor, the
reconnect guard, the config cache), ``queues`` (queues and topics), ``delivery`` (send, receive, ack,
nack, extend), ``bounded``, ``expiry`` and ``cancel`` (flow control),
``operations`` (purge, move, retry, peek, stats, prune), ``redrive``, ``aio`` (async
twins), ``sql`` (every statement), ``errors`` and ``types``.

``queues.engine.redrive`` and ``queues.engine.cancel`` are the functions (the verbs of the API), not
their modules: import from a module by its full path (``from queues.engine.redrive import start_redrive``).
"""

from queues.engine.aio import *  # noqa: F403
from queues.engine.cancel import *  # noqa: F403
from queues.engine.connection import *  # noqa: F403
from queues.engine.delivery import *  # noqa: F403
from queues.engine.errors import *  # noqa: F403
from queues.engine.expiry import *  # noqa: F403
from queues.engine.operations import *  # noqa: F403
from queues.engine.queues import *  # noqa: F403
from queues.engine.redrive import *  # noqa: F403
from queues.engine.types import *  # noqa: F403
from queues.engine.validation import *  # noqa: F403
