"""The licence request's instance is now `instances.Instance` (issue 16): state only, the table
and its foreign key are unchanged (instances 0002 renames the table)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('instances', '0001_initial'),
        ('licensing', '0002_state_index_once'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='licenserequest',
                    name='instance',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='license_requests', to='instances.instance'),
                ),
            ],
        ),
    ]
