"""Users are linked to their department without an index or a foreign key (issue 17).

A first allOrgSync links every user that arrived before its department (§2.6): 20,000 users in
the benchmark. With `department_id` in an index, each link wrote a new entry into every index
of the table (~12 µs a user), and the deferred foreign-key check cost as much again at commit.
Now the column is in no index, and the table keeps half of each page free on PostgreSQL
(fillfactor 50), so a link is a heap-only (HOT) update in place: no index is touched. The
services keep the link (see TenantUser.department); users of a department are found through
(tenant, org_code). Rows written before this migration keep their pages until rewritten.
"""

import django.db.models.deletion
from django.db import migrations, models

USERS = "tenants_tenantuser"
FILLFACTOR = 50


def leave_room(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE {USERS} SET (fillfactor = {FILLFACTOR})")


def fill_pages(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE {USERS} RESET (fillfactor)")


class Migration(migrations.Migration):
    dependencies = [
        ("orgsync", "0006_department_tenant_checked_per_statement"),
        ("tenants", "0004_org_snapshot_digest"),
    ]

    operations = [
        migrations.AlterField(
            model_name="tenantuser",
            name="department",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                help_text="linked once a department with org_code exists",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="users",
                to="orgsync.department",
            ),
        ),
        migrations.RunPython(leave_room, fill_pages),
    ]
