"""The queue engine: PostgreSQL SQL and the Python API. Knows nothing of HTTP or the dashboard."""

from queues.engine.aio import *  # noqa: F403
from queues.engine.core import *  # noqa: F403
from queues.engine.errors import *  # noqa: F403
from queues.engine.types import *  # noqa: F403
