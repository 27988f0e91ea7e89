"""Settings of the daphne processes that the live and browser tests start.

The project's settings, plus static files served by daphne itself (as in the demo) and
``MQADMIN`` overrides from the JSON in ``MQADMIN_TEST_OVERRIDES``.
"""

import json
import os

from mqadmin.settings import *  # noqa: F403
from mqadmin.settings import MQADMIN

SERVE_STATIC = True
MQADMIN = {**MQADMIN, **json.loads(os.environ.get("MQADMIN_TEST_OVERRIDES") or "{}")}
