import os

from django.core.wsgi import get_wsgi_application

from ops.wsgi import ChunkedBodies

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Bodies streamed without a Content-Length are read to their end first (ops/wsgi.py).
application = ChunkedBodies(get_wsgi_application())
