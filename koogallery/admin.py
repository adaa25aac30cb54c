"""Admin of the KooGallery boundary, read-only: the inbound call journal (inbound/admin.py) and
what goes out (outbound/admin.py: attempts and the job outbox). Django finds the admin modules of
an app here; the classes every app's admin builds on are in admin_kit.py."""

from koogallery.inbound import admin as inbound_admin  # noqa: F401 - registers the journal
from koogallery.outbound import admin as outbound_admin  # noqa: F401 - registers attempts, jobs
