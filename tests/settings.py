"""Settings of the test run: the project's settings with a test-only secret key.

The key goes into the environment before the project's settings read it, so every process the
tests start (workers, daphne, ``manage.py``) inherits the same key and accepts the sessions the
test process signs. It signs nothing outside a test database.

Login throttling (django-axes) stays on, as in production: its backend needs the request, so log
test clients in with ``client.force_login(user)`` or through the login form, not ``client.login()``.
"""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "tests-only-" + "k" * 50)

from mqadmin.settings import *  # noqa: F403
