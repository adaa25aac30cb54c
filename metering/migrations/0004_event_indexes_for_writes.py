"""Every recorded usage event writes each index of its table (issue 17): the two that no read
needs go. event_id stays unique through a constraint (one index; `unique=True` on a CharField
also builds a varchar_pattern_ops index for LIKE on PostgreSQL, which nothing runs), made before
the field's own is dropped so that the id is never without one; instance_id's own index goes, as
metering_event_instance (instance, occurred_at) serves every lookup by instance."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('instances', '0002_tables_renamed'),
        ('metering', '0003_instance_moved'),
    ]

    operations = [
        migrations.AddConstraint(
            model_name='usageevent',
            constraint=models.UniqueConstraint(fields=('event_id',), name='uniq_usage_event_id'),
        ),
        migrations.AlterField(
            model_name='usageevent',
            name='event_id',
            field=models.CharField(help_text="the reporter's id", max_length=128),
        ),
        migrations.AlterField(
            model_name='usageevent',
            name='instance',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='usage_events', to='instances.instance'),
        ),
    ]
