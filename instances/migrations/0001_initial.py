"""SaaS instances move from the `koogallery` app to this one (issue 16), without touching a row.

This migration only tells Django's model state that `Instance`, `InstanceTransition` and
`InstanceOrder` now belong here, on the tables `koogallery` created (`koogallery_instance`, …),
with the same index names. Nothing runs against the database. `koogallery` 0011 then drops them
from its own state; 0002 here renames the tables, their two indexes and the content types.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('koogallery', '0010_journal_stale_entities'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='Instance',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('instance_id', models.CharField(help_text='first businessId', max_length=64, unique=True)),
                        ('order_id', models.CharField(max_length=64)),
                        ('order_line_id', models.CharField(blank=True, help_text='empty for V1 orders', max_length=64)),
                        ('v1_product_key', models.CharField(blank=True, help_text='V1 on-demand (package) orders are keyed (orderId, productId) (§4.4, §5.5); empty otherwise', max_length=64)),
                        ('is_test', models.BooleanField(default=False, help_text='created by a testFlag 1 call (§2.5)')),
                        ('family', models.CharField(choices=[('kit_v2', 'Kit V2 (x-sign)'), ('kit_v1', 'Kit V1 (authToken)'), ('basic_v2', 'Basic V2 (signature)'), ('basic_v1', 'Basic V1 (GET, authToken)')], default='basic_v2', help_text='protocol of the newInstance call', max_length=16)),
                        ('state', models.CharField(choices=[('provisioning', 'provisioning'), ('active', 'active'), ('frozen', 'frozen'), ('released', 'released')], default='provisioning', max_length=16)),
                        ('charging_mode', models.CharField(blank=True, choices=[('', 'unknown (order not fetched yet)'), ('PERIOD', 'period (包周期)'), ('ONE_TIME', 'one-time (一次性)'), ('ON_DEMAND', 'on-demand (按需)'), ('ON_DEMAND_PKG', 'on-demand package (按需套餐包)')], default='', max_length=16)),
                        ('product_id', models.CharField(blank=True, max_length=64)),
                        ('sku_code', models.CharField(blank=True, max_length=64)),
                        ('product_name', models.CharField(blank=True, max_length=255)),
                        ('period_type', models.CharField(blank=True, max_length=16)),
                        ('period_number', models.PositiveIntegerField(blank=True, null=True)),
                        ('linear_value', models.PositiveIntegerField(blank=True, help_text='purchased quantity (licence quota)', null=True)),
                        ('is_trial', models.BooleanField(default=False)),
                        ('order_type', models.CharField(blank=True, max_length=32)),
                        ('order_created_at', models.DateTimeField(blank=True, null=True)),
                        ('expire_at', models.DateTimeField(blank=True, null=True)),
                        ('customer_id', models.CharField(blank=True, max_length=100)),
                        ('customer_name', models.CharField(blank=True, max_length=255)),
                        ('buyer_email', models.CharField(blank=True, max_length=255)),
                        ('buyer_mobile_masked', models.CharField(blank=True, help_text='only the first 3 and last 4 digits are kept', max_length=32)),
                        ('extend_params', models.JSONField(blank=True, default=list, help_text='saasExtendParams / Query Order extendParams')),
                        ('admin_username', models.CharField(blank=True, max_length=64)),
                        ('admin_password_encrypted', models.TextField(blank=True, editable=False)),
                        ('order_info', models.JSONField(blank=True, default=dict, help_text='last Query Order answer')),
                        ('order_fetched_at', models.DateTimeField(blank=True, null=True)),
                        ('order_fetch_error', models.CharField(blank=True, help_text='last Query Order failure (empty once fetched)', max_length=1024)),
                        ('frozen_at', models.DateTimeField(blank=True, null=True)),
                        ('released_at', models.DateTimeField(blank=True, null=True)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                        ('package_instance', models.ForeignKey(blank=True, help_text='ON_DEMAND_PKG instance whose quota this on-demand instance uses (§5.5)', limit_choices_to={'charging_mode': 'ON_DEMAND_PKG'}, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='billing_items', to='instances.instance')),
                    ],
                    options={
                        'db_table': 'koogallery_instance',
                        'ordering': ['-created_at'],
                    },
                ),
                migrations.CreateModel(
                    name='InstanceOrder',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('event', models.CharField(choices=[('refreshInstance', 'refresh (renewal, trial to formal, unsubscribe)'), ('upgradeInstance', 'upgrade'), ('orderNotify', 'order notification')], max_length=32)),
                        ('order_id', models.CharField(max_length=64)),
                        ('order_line_id', models.CharField(blank=True, max_length=64)),
                        ('scene', models.CharField(blank=True, choices=[('TRIAL_TO_FORMAL', 'trial to formal (试用转正)'), ('RENEWAL', 'renewal (续费)'), ('UNSUBSCRIBE_RENEWAL_PERIOD', 'unsubscribed renewal (退续费)'), ('RENEWAL_CHANGE', 'change at renewal (续费变更)')], max_length=64)),
                        ('is_test', models.BooleanField(default=False)),
                        ('product_id', models.CharField(blank=True, help_text='as the call sent it', max_length=64)),
                        ('sku_code', models.CharField(blank=True, help_text='as the call sent it', max_length=64)),
                        ('expire_at', models.DateTimeField(blank=True, help_text='as the call sent it', null=True)),
                        ('params', models.JSONField(blank=True, default=dict, help_text='other fields of the call')),
                        ('order_type', models.CharField(blank=True, max_length=32)),
                        ('order_info', models.JSONField(blank=True, default=dict, help_text='Query Order answer')),
                        ('order_fetched_at', models.DateTimeField(blank=True, null=True)),
                        ('order_fetch_error', models.CharField(blank=True, max_length=1024)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('inbound_call', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, to='koogallery.inboundcall')),
                        ('instance', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='orders', to='instances.instance')),
                    ],
                    options={
                        'db_table': 'koogallery_instanceorder',
                        'ordering': ['-created_at', '-id'],
                    },
                ),
                migrations.CreateModel(
                    name='InstanceTransition',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('from_state', models.CharField(blank=True, choices=[('provisioning', 'provisioning'), ('active', 'active'), ('frozen', 'frozen'), ('released', 'released')], max_length=16)),
                        ('to_state', models.CharField(choices=[('provisioning', 'provisioning'), ('active', 'active'), ('frozen', 'frozen'), ('released', 'released')], max_length=16)),
                        ('cause', models.CharField(help_text='activity, task or admin action', max_length=64)),
                        ('detail', models.CharField(blank=True, max_length=255)),
                        ('at', models.DateTimeField(auto_now_add=True)),
                        ('inbound_call', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, to='koogallery.inboundcall')),
                        ('instance', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='transitions', to='instances.instance')),
                    ],
                    options={
                        'db_table': 'koogallery_instancetransition',
                        'ordering': ['at', 'id'],
                    },
                ),
                migrations.AddIndex(
                    model_name='instance',
                    index=models.Index(fields=['state', 'is_test'], name='koogallery__state_b86767_idx'),
                ),
                migrations.AddConstraint(
                    model_name='instance',
                    constraint=models.UniqueConstraint(fields=('order_id', 'order_line_id', 'v1_product_key', 'is_test'), name='uniq_instance_order_line'),
                ),
                migrations.AddConstraint(
                    model_name='instance',
                    constraint=models.UniqueConstraint(condition=models.Q(('charging_mode__in', ['ON_DEMAND', 'ON_DEMAND_PKG']), models.Q(('product_id', ''), _negated=True)), fields=('order_id', 'product_id', 'is_test'), name='uniq_instance_billing_item'),
                ),
                migrations.AddIndex(
                    model_name='instanceorder',
                    index=models.Index(fields=['order_id', 'order_line_id'], name='koogallery__order_i_6b76b2_idx'),
                ),
                migrations.AddConstraint(
                    model_name='instanceorder',
                    constraint=models.UniqueConstraint(condition=models.Q(('event', 'refreshInstance')), fields=('instance', 'order_id', 'order_line_id', 'scene'), name='uniq_instance_order_refresh'),
                ),
                migrations.AddConstraint(
                    model_name='instanceorder',
                    constraint=models.UniqueConstraint(condition=models.Q(('event__in', ['upgradeInstance', 'orderNotify'])), fields=('event', 'order_id', 'order_line_id', 'is_test'), name='uniq_instance_order_event'),
                ),
            ],
        ),
    ]
