"""SaaS instances driven by the basic production interface (spec §4.2, §2.7).

State machine: provisioning → active ⇄ frozen → released. Each change of state is one
`InstanceTransition` row (who/what call, old → new, when), as the Azure SaaS Accelerator keeps.
"""

from django.db import models


class InstanceState(models.TextChoices):
    PROVISIONING = "provisioning", "provisioning"
    ACTIVE = "active", "active"
    FROZEN = "frozen", "frozen"
    RELEASED = "released", "released"


class ChargingMode(models.TextChoices):
    UNKNOWN = "", "unknown (order not fetched yet)"
    PERIOD = "PERIOD", "period (包周期)"
    ONE_TIME = "ONE_TIME", "one-time (一次性)"
    ON_DEMAND = "ON_DEMAND", "on-demand (按需)"
    ON_DEMAND_PKG = "ON_DEMAND_PKG", "on-demand package (按需套餐包)"


class Instance(models.Model):
    instance_id = models.CharField(max_length=64, unique=True, help_text="first businessId")
    order_id = models.CharField(max_length=64)
    order_line_id = models.CharField(max_length=64, blank=True)
    is_test = models.BooleanField(default=False)
    state = models.CharField(
        max_length=16, choices=InstanceState.choices, default=InstanceState.PROVISIONING
    )

    charging_mode = models.CharField(
        max_length=16, choices=ChargingMode.choices, default=ChargingMode.UNKNOWN, blank=True
    )
    product_id = models.CharField(max_length=64, blank=True)
    sku_code = models.CharField(max_length=64, blank=True)
    product_name = models.CharField(max_length=255, blank=True)
    period_type = models.CharField(max_length=16, blank=True)
    period_number = models.PositiveIntegerField(null=True, blank=True)
    linear_value = models.PositiveIntegerField(
        null=True, blank=True, help_text="purchased quantity (licence quota)"
    )
    is_trial = models.BooleanField(default=False)
    order_type = models.CharField(max_length=32, blank=True)
    order_created_at = models.DateTimeField(null=True, blank=True)
    expire_at = models.DateTimeField(null=True, blank=True)

    customer_id = models.CharField(max_length=100, blank=True)
    customer_name = models.CharField(max_length=255, blank=True)

    order_info = models.JSONField(default=dict, blank=True, help_text="last Query Order answer")
    order_fetched_at = models.DateTimeField(null=True, blank=True)

    frozen_at = models.DateTimeField(null=True, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["order_id", "order_line_id", "is_test"], name="uniq_instance_order_line"
            )
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.instance_id} [{self.state}]"


class InstanceTransition(models.Model):
    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="transitions")
    from_state = models.CharField(max_length=16, choices=InstanceState.choices, blank=True)
    to_state = models.CharField(max_length=16, choices=InstanceState.choices)
    cause = models.CharField(max_length=64, help_text="activity, task or admin action")
    detail = models.CharField(max_length=255, blank=True)
    inbound_call = models.ForeignKey(
        "koogallery.InboundCall", null=True, blank=True, on_delete=models.SET_NULL
    )
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.from_state or '∅'} → {self.to_state} by {self.cause}"
