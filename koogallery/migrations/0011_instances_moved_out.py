"""The SaaS-instance models left this app for `instances` (issue 16): state only, the tables stay
(instances 0001 took them over, instances 0002 renames them)."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('koogallery', '0010_journal_stale_entities'),
        ('licensing', '0003_instance_moved'),
        ('metering', '0003_instance_moved'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveField(
                    model_name='instancetransition',
                    name='instance',
                ),
                migrations.RemoveField(
                    model_name='instanceorder',
                    name='instance',
                ),
                migrations.RemoveField(
                    model_name='instanceorder',
                    name='inbound_call',
                ),
                migrations.RemoveField(
                    model_name='instancetransition',
                    name='inbound_call',
                ),
                migrations.DeleteModel(
                    name='Instance',
                ),
                migrations.DeleteModel(
                    name='InstanceOrder',
                ),
                migrations.DeleteModel(
                    name='InstanceTransition',
                ),
            ],
        ),
    ]
