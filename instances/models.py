"""SaaS instances driven by the basic production interface (spec §4.2, §2.7).

State machine: provisioning → active ⇄ frozen → released. Each change of state is one
`InstanceTransition` row (who/what call, old → new, when), as the Azure SaaS Accelerator keeps.
"""

from django.db import models
from django.db.models import Q

from koogallery.inbound.journal import Family


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


# Charging modes billed from reported usage (§5.5); keyed (orderId, productId).
ON_DEMAND_MODES = (ChargingMode.ON_DEMAND, ChargingMode.ON_DEMAND_PKG)

# V1 `chargingMode` integers (§4.4) and the Query Order names they stand for (§5.1).
V1_CHARGING_MODES = {
    0: ChargingMode.ON_DEMAND,
    1: ChargingMode.PERIOD,
    3: ChargingMode.ONE_TIME,
    5: ChargingMode.ON_DEMAND_PKG,
}


class Instance(models.Model):
    instance_id = models.CharField(max_length=64, unique=True, help_text="first businessId")
    order_id = models.CharField(max_length=64)
    order_line_id = models.CharField(max_length=64, blank=True, help_text="empty for V1 orders")
    v1_product_key = models.CharField(
        max_length=64,
        blank=True,
        help_text="V1 on-demand (package) orders are keyed (orderId, productId) (§4.4, §5.5); "
        "empty otherwise",
    )
    is_test = models.BooleanField(default=False, help_text="created by a testFlag 1 call (§2.5)")
    family = models.CharField(
        max_length=16,
        choices=Family.choices,
        default=Family.BASIC_V2,
        help_text="protocol of the newInstance call",
    )
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
    buyer_email = models.CharField(max_length=255, blank=True)
    buyer_mobile_masked = models.CharField(
        max_length=32, blank=True, help_text="only the first 3 and last 4 digits are kept"
    )
    extend_params = models.JSONField(
        default=list, blank=True, help_text="saasExtendParams / Query Order extendParams"
    )

    # V1 products may hand the buyer an admin account (§4.4); the password is Fernet-encrypted.
    admin_username = models.CharField(max_length=64, blank=True)
    admin_password_encrypted = models.TextField(blank=True, editable=False)

    order_info = models.JSONField(default=dict, blank=True, help_text="last Query Order answer")
    order_fetched_at = models.DateTimeField(null=True, blank=True)
    order_fetch_error = models.CharField(
        max_length=1024, blank=True, help_text="last Query Order failure (empty once fetched)"
    )

    # On-demand usage may be deducted from a package (§5.5): the ON_DEMAND_PKG instance an
    # ON_DEMAND instance belongs to. Linked by Query Order when determinable (same customer and
    # product, exactly one live package) or by an operator (metering admin).
    package_instance = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="billing_items",
        limit_choices_to={"charging_mode": "ON_DEMAND_PKG"},
        help_text="ON_DEMAND_PKG instance whose quota this on-demand instance uses (§5.5)",
    )

    frozen_at = models.DateTimeField(null=True, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            # newInstance is idempotent on its order line (§2.7), scoped by the test flag (§2.5).
            models.UniqueConstraint(
                fields=["order_id", "order_line_id", "v1_product_key", "is_test"],
                name="uniq_instance_order_line",
            ),
            # One instance per on-demand billing item: (orderId, productId) (§5.5), whichever
            # call created it (V1 names the product, V2 learns it from Query Order).
            models.UniqueConstraint(
                fields=["order_id", "product_id", "is_test"],
                condition=Q(charging_mode__in=["ON_DEMAND", "ON_DEMAND_PKG"]) & ~Q(product_id=""),
                name="uniq_instance_billing_item",
            ),
        ]
        indexes = [models.Index(fields=["state", "is_test"])]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.instance_id} [{self.state}]"

    @property
    def is_released(self) -> bool:
        return self.state == InstanceState.RELEASED

    @property
    def is_metered(self) -> bool:
        """Billed from reported usage (§5.5): on-demand or on-demand package."""
        return self.charging_mode in ON_DEMAND_MODES

    @property
    def has_credentials(self) -> bool:
        return bool(self.admin_username and self.admin_password_encrypted)


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


class OrderEvent(models.TextChoices):
    """The calls that bring an order other than the purchase order (the instance's own)."""

    REFRESH = "refreshInstance", "refresh (renewal, trial to formal, unsubscribe)"
    UPGRADE = "upgradeInstance", "upgrade"
    NOTIFY = "orderNotify", "order notification"


class RefreshScene(models.TextChoices):
    TRIAL_TO_FORMAL = "TRIAL_TO_FORMAL", "trial to formal (试用转正)"
    RENEWAL = "RENEWAL", "renewal (续费)"
    UNSUBSCRIBE_RENEWAL_PERIOD = "UNSUBSCRIBE_RENEWAL_PERIOD", "unsubscribed renewal (退续费)"
    RENEWAL_CHANGE = "RENEWAL_CHANGE", "change at renewal (续费变更)"


class InstanceOrder(models.Model):
    """An order KooGallery told us about after the purchase: the natural key of its call.

    A repeated refreshInstance (instanceId, orderId, orderLineId, scene), upgradeInstance or
    orderNotify (orderId, orderLineId) finds its row and changes nothing (§2.7, STYLE.md §3).
    """

    instance = models.ForeignKey(
        Instance, null=True, blank=True, on_delete=models.CASCADE, related_name="orders"
    )
    event = models.CharField(max_length=32, choices=OrderEvent.choices)
    order_id = models.CharField(max_length=64)
    order_line_id = models.CharField(max_length=64, blank=True)
    scene = models.CharField(max_length=64, blank=True, choices=RefreshScene.choices)
    is_test = models.BooleanField(default=False)

    product_id = models.CharField(max_length=64, blank=True, help_text="as the call sent it")
    sku_code = models.CharField(max_length=64, blank=True, help_text="as the call sent it")
    expire_at = models.DateTimeField(null=True, blank=True, help_text="as the call sent it")
    params = models.JSONField(default=dict, blank=True, help_text="other fields of the call")

    order_type = models.CharField(max_length=32, blank=True)
    order_info = models.JSONField(default=dict, blank=True, help_text="Query Order answer")
    order_fetched_at = models.DateTimeField(null=True, blank=True)
    order_fetch_error = models.CharField(max_length=1024, blank=True)

    inbound_call = models.ForeignKey(
        "koogallery.InboundCall", null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["instance", "order_id", "order_line_id", "scene"],
                condition=Q(event="refreshInstance"),
                name="uniq_instance_order_refresh",
            ),
            models.UniqueConstraint(
                fields=["event", "order_id", "order_line_id", "is_test"],
                condition=Q(event__in=["upgradeInstance", "orderNotify"]),
                name="uniq_instance_order_event",
            ),
        ]
        indexes = [models.Index(fields=["order_id", "order_line_id"])]
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        scene = f" {self.scene}" if self.scene else ""
        return f"{self.event}{scene} {self.order_id}/{self.order_line_id or '-'}"
