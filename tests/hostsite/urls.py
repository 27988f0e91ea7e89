"""A host's URLconf: mqadmin under a prefix, no Django admin, no logout view (as with some SSO set-ups)."""

from django.http import HttpResponse
from django.urls import include, path


def host_login(request):
    return HttpResponse("the host's own login page")


urlpatterns = [
    path("login/", host_login, name="host-login"),
    path("ops/queues/", include("queues.urls")),
]
