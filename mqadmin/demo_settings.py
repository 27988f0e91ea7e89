"""Settings of the demo's child processes: the project's settings plus the demo's handlers.

``python manage.py mq_demo`` (``make demo``) starts its workers, producer and daphne with
``DJANGO_SETTINGS_MODULE=mqadmin.demo_settings``, so only the demo's workers load the handlers in
``mqadmin/demo.py``; workers of a real deployment never do.
"""

from mqadmin.settings import *  # noqa: F403
from mqadmin.settings import MQADMIN

# Handler specs (function and options) of mqadmin/demo.py.
MQADMIN = {
    **MQADMIN,
    "HANDLERS": {
        **MQADMIN.get("HANDLERS", {}),
        "orders": "mqadmin.demo.ORDER_HANDLER",
        "emails": "mqadmin.demo.EMAIL_HANDLER",
        "reports": "mqadmin.demo.REPORT_HANDLER",
        "payments.fifo": "mqadmin.demo.PAYMENT_HANDLER",
    },
}

# daphne serves the dashboard's static files itself in the demo (see mqadmin/asgi.py).
SERVE_STATIC = True
