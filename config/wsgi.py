import os

from django.core.wsgi import get_wsgi_application

from ops.wsgi import RequestBodies

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Bodies are read whole, within HTTP_BODY_TIMEOUT_S, before Django sees them (ops/wsgi.py).
application = RequestBodies(get_wsgi_application())
