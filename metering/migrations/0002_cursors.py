from django.db import migrations


def create_cursors(apps, schema_editor):
    # The cursor rows are locks as well as positions (metering/aggregation.py): they must exist
    # before the first event arrives.
    cursor = apps.get_model("metering", "MeteringCursor")
    for name in ("closed", "aggregated"):
        cursor.objects.get_or_create(name=name)


class Migration(migrations.Migration):
    dependencies = [("metering", "0001_initial")]

    operations = [migrations.RunPython(create_cursors, migrations.RunPython.noop)]
