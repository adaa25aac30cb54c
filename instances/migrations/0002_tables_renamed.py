
"""The moved instance models take this app's names (issue 16), every row and key kept.

- Tables `koogallery_instance`, `koogallery_instanceorder`, `koogallery_instancetransition`
  become `instances_*` (ALTER TABLE … RENAME: the rows, the sequences and the foreign keys that
  point at them — licence requests, usage events and records, the instances' own — stay as they
  are), and their two indexes take the names Django gives them here.
- Their content types move to this app, so the operators' permissions on instances and the admin
  history of instance pages follow them.
- Query Order jobs waiting in the outbox under the tasks' old names run under the new ones
  (`koogallery.tasks.fetch_order_*` → `instances.tasks.fetch_order_*`). A message already on
  the broker under an old name is not lost either: the order sweep queues any Query Order that
  never ran again (instances/sweep.py).
"""

from django.db import migrations

MODELS = ("instance", "instanceorder", "instancetransition")
TASKS = ("fetch_order_details", "fetch_order_event")


def move_labels(apps, schema_editor, old: str, new: str) -> None:
    ContentType = apps.get_model("contenttypes", "ContentType")
    QueuedJob = apps.get_model("koogallery", "QueuedJob")
    db = schema_editor.connection.alias
    for model in MODELS:
        # A content type the new label already has (made by a post-migrate in between) gives
        # way to the old one, which carries the permissions and the admin history.
        if ContentType.objects.using(db).filter(app_label=old, model=model).exists():
            ContentType.objects.using(db).filter(app_label=new, model=model).delete()
            ContentType.objects.using(db).filter(app_label=old, model=model).update(app_label=new)
    tasks_of = {"koogallery": "koogallery.tasks", "instances": "instances.tasks"}
    for task in TASKS:
        QueuedJob.objects.using(db).filter(task=f"{tasks_of[old]}.{task}").update(
            task=f"{tasks_of[new]}.{task}"
        )


def forwards(apps, schema_editor) -> None:
    move_labels(apps, schema_editor, "koogallery", "instances")


def backwards(apps, schema_editor) -> None:
    move_labels(apps, schema_editor, "instances", "koogallery")


class Migration(migrations.Migration):

    dependencies = [
        ('instances', '0001_initial'),
        ('koogallery', '0011_instances_moved_out'),
        ('contenttypes', '0002_remove_content_type_name'),
    ]

    operations = [
        migrations.RenameIndex(
            model_name='instance',
            new_name='instances_i_state_8be83a_idx',
            old_name='koogallery__state_b86767_idx',
        ),
        migrations.RenameIndex(
            model_name='instanceorder',
            new_name='instances_i_order_i_9c9a8e_idx',
            old_name='koogallery__order_i_6b76b2_idx',
        ),
        migrations.AlterModelTable(
            name='instance',
            table=None,
        ),
        migrations.AlterModelTable(
            name='instanceorder',
            table=None,
        ),
        migrations.AlterModelTable(
            name='instancetransition',
            table=None,
        ),
        migrations.RunPython(forwards, backwards),
    ]
