"""The department→tenant rule held by statement-level triggers instead of a foreign key (issue 17).

A foreign key is checked row by row: 100,000 checks at the commit of a first allOrgSync (Django
creates its keys DEFERRABLE INITIALLY DEFERRED), ~0.5 s. On PostgreSQL these triggers keep the
same two rules for the price of one check per statement:

- an INSERT (or COPY) naming a tenant that does not exist is refused (foreign_key_violation),
  and every tenant it names is locked FOR KEY SHARE, as a foreign key's check locks it, so a
  concurrent delete of that tenant waits for the commit (and then removes the new rows) or, if
  it came first, makes the INSERT fail; an UPDATE moving a department to a missing tenant is
  refused likewise (row by row, only when tenant_id changes: nothing does);
- a deleted tenant takes its departments with it (the ORM's cascade has usually removed them
  already), and a tenant's id cannot change while departments point at it.

TRUNCATE of tenants_tenant alone stays refused by the foreign keys of its other tables. SQLite
gets no triggers: one that named orgsync_department from tenants_tenant would break Django's
table rebuilds there; SQLite serialises every writer, the services write departments only under
their tenant, and the ORM's cascade removes them.
"""

import django.db.models.deletion
from django.db import migrations, models

CREATE = """
CREATE FUNCTION orgsync_department_tenant_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    named bigint;
    locked bigint;
BEGIN
    WITH tenants AS (SELECT DISTINCT tenant_id FROM new_departments)
    SELECT (SELECT count(*) FROM tenants),
           (SELECT count(*) FROM (SELECT 1 FROM tenants_tenant t
                                  WHERE t.id IN (SELECT tenant_id FROM tenants)
                                  FOR KEY SHARE OF t) AS held)
      INTO named, locked;
    IF locked < named THEN
        RAISE EXCEPTION 'orgsync_department names a tenant that does not exist'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER orgsync_department_tenant_inserted
    AFTER INSERT ON orgsync_department REFERENCING NEW TABLE AS new_departments
    FOR EACH STATEMENT EXECUTE FUNCTION orgsync_department_tenant_inserted();

CREATE FUNCTION orgsync_department_tenant_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM tenants_tenant t WHERE t.id = NEW.tenant_id FOR KEY SHARE OF t;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'orgsync_department names a tenant that does not exist'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER orgsync_department_tenant_changed
    AFTER UPDATE OF tenant_id ON orgsync_department
    FOR EACH ROW WHEN (OLD.tenant_id IS DISTINCT FROM NEW.tenant_id)
    EXECUTE FUNCTION orgsync_department_tenant_changed();

CREATE FUNCTION orgsync_tenant_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM orgsync_department WHERE tenant_id = OLD.id;
    RETURN NULL;
END $$;

CREATE TRIGGER orgsync_tenant_deleted
    AFTER DELETE ON tenants_tenant
    FOR EACH ROW EXECUTE FUNCTION orgsync_tenant_deleted();

CREATE FUNCTION orgsync_tenant_renumbered() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM orgsync_department WHERE tenant_id = OLD.id) THEN
        RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation',
            MESSAGE = 'tenants_tenant ' || OLD.id || ' still has departments';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER orgsync_tenant_renumbered
    AFTER UPDATE OF id ON tenants_tenant
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id)
    EXECUTE FUNCTION orgsync_tenant_renumbered();
"""

DROP = """
DROP TRIGGER orgsync_tenant_renumbered ON tenants_tenant;
DROP FUNCTION orgsync_tenant_renumbered();
DROP TRIGGER orgsync_tenant_deleted ON tenants_tenant;
DROP FUNCTION orgsync_tenant_deleted();
DROP TRIGGER orgsync_department_tenant_changed ON orgsync_department;
DROP FUNCTION orgsync_department_tenant_changed();
DROP TRIGGER orgsync_department_tenant_inserted ON orgsync_department;
DROP FUNCTION orgsync_department_tenant_inserted();
"""


def _on_postgresql(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):

    dependencies = [
        ('orgsync', '0005_call_times_and_removals'),
        ('tenants', '0004_org_snapshot_digest'),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name='department',
            name='orgsync_dep_tenant__9dc811_idx',
        ),
        migrations.AlterField(
            model_name='department',
            name='tenant',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='departments', to='tenants.tenant'),
        ),
        migrations.AddIndex(
            model_name='department',
            index=models.Index(condition=models.Q(('parent__isnull', True)), fields=['tenant', 'parent_code'], name='orgsync_dept_unlinked'),
        ),
        migrations.RunPython(_on_postgresql(CREATE), _on_postgresql(DROP)),
    ]
