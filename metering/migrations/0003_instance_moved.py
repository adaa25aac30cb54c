"""Usage rows point at `instances.Instance` now (issue 16), and the metered-instance proxy sits
on it: state only, no table changes (instances 0002 renames the table)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('instances', '0001_initial'),
        ('metering', '0002_cursors'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                # A proxy's base cannot be altered: the proxy is deleted and made again on
                # instances.Instance (a proxy has no table; its content type stays).
                migrations.DeleteModel(name='MeteredInstance'),
                migrations.CreateModel(
                    name='MeteredInstance',
                    fields=[],
                    options={
                        'verbose_name': 'metered instance',
                        'proxy': True,
                        'indexes': [],
                        'constraints': [],
                    },
                    bases=('instances.instance',),
                ),
                migrations.AlterField(
                    model_name='usageevent',
                    name='instance',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='usage_events', to='instances.instance'),
                ),
                migrations.AlterField(
                    model_name='usagerecord',
                    name='instance',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='usage_records', to='instances.instance'),
                ),
            ],
        ),
    ]
