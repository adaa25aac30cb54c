from django.core.management import call_command
from django.db import migrations


def create_cache_table(apps, schema_editor):
    # The nonce store needs the database cache table on the embedded default (no Redis);
    # creating it here means `migrate` is the only set-up step. Idempotent.
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies = [("koogallery", "0001_initial")]
    operations = [migrations.RunPython(create_cache_table, migrations.RunPython.noop)]
