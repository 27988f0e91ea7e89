"""ASGI entry point of the demo site: the app's own helper, exactly as a host would use it."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mqadmin.settings")
# Django must be set up before anything that touches models is imported.
django_asgi_app = get_asgi_application()

from django.conf import settings  # noqa: E402

from queues.asgi import dashboard_application  # noqa: E402

application = dashboard_application(django_asgi_app)

# The dashboard's CSS and JS straight from daphne when asked (the demo sets SERVE_STATIC; default
# DEBUG). Otherwise a web server or WhiteNoise in front serves collectstatic's output.
if getattr(settings, "SERVE_STATIC", settings.DEBUG):
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    application = ASGIStaticFilesHandler(application)
