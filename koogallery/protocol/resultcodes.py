"""Result codes the merchant returns to KooGallery (spec §6.1)."""

from django.db import models


class ResultCode(models.TextChoices):
    SUCCESS = "000000", "success"
    AUTH_FAILED = "000001", "authentication failed"
    INVALID_PARAM = "000002", "invalid request parameter"
    INSTANCE_NOT_FOUND = "000003", "instance ID does not exist"
    PROCESSING = "000004", "request is being processed"
    INTERNAL_ERROR = "000005", "other internal service error"
    NO_INSTANCE_RESOURCE = "000100", "no instance resource available"
    MOBILE_TAKEN = "000101", "mobile number empty or already exists"
    EMAIL_TAKEN = "000102", "e-mail empty or already exists"
    NO_REPURCHASE = "000103", "product cannot be purchased twice"
    PRODUCT_INTERNAL_ERROR = "000104", "product internal service error"
    BENEFIT_SUBSCRIBED = "000105", "account has already subscribed to benefits"
    SOLD_OUT = "000106", "product resources sold out"
    EMAIL_DOMAIN_TAKEN = "000107", "SaaS e-mail domain already exists"
    LICENSE_QUOTA_EXHAUSTED = "000900", "insufficient licence quota on the current order"
    LICENSE_OUTSIDE_VALIDITY = "000901", "apply within the current order's validity period"
    LICENSE_EXPIRY_REQUIRED = "000902", "a period licence needs an expiry date"
    LICENSE_FINGERPRINT_REQUIRED = "000903", "device fingerprint or hardware id required"

    @property
    def accepted(self) -> bool:
        """Whether the call's domain writes are kept (spec §2.4: all others change nothing)."""
        return self in (ResultCode.SUCCESS, ResultCode.PROCESSING)


class KooGalleryError(Exception):
    """Raised anywhere below a KooGallery endpoint to answer with a result code.

    The endpoint rolls back the call's transaction and answers the code with `message` (or the
    code's meaning), so services can refuse a call from any depth without leaving partial writes.
    """

    def __init__(self, code: ResultCode, message: str | None = None):
        self.code = ResultCode(code)
        self.message = message or self.code.label
        super().__init__(f"{self.code.value} {self.message}")


class InvalidParam(KooGalleryError):
    def __init__(self, message: str):
        super().__init__(ResultCode.INVALID_PARAM, message)
