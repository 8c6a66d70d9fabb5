"""Request and response bodies of the payment API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Money(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: int = Field(gt=0, description="integer minor units (kopecks, cents)")
    currency: str = Field(min_length=3, max_length=3, pattern="^[A-Z]{3}$")


class PaymentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    registration_id: str
    kind: Literal["full", "prepayment", "remainder"] = "full"
    save_payment_method: bool = Field(
        default=False, description="keep the payer's method for one-click payments")
    payment_method_id: str | None = Field(
        default=None, max_length=64,
        description="charge one of your saved methods (no redirect to the provider)")


class PaymentOut(BaseModel):
    id: str
    registration_id: str
    event_id: str
    user_id: str
    kind: str
    status: str
    amount: Money
    captured: dict[str, int | str]
    refunded: dict[str, int | str]
    provider: str
    confirmation_url: str | None
    created_at: str
    updated_at: str


class PaymentList(BaseModel):
    items: list[PaymentOut]
    next_cursor: str | None
    by_status: dict[str, int] | None = Field(
        default=None, description="an event's payments counted by status (event_id lists)")


class PaymentMethodOut(BaseModel):
    id: str
    provider: str
    type: str
    title: str = Field(description='a display title only, e.g. "Card *4444"')
    created_at: str


class PaymentMethodList(BaseModel):
    items: list[PaymentMethodOut]
    next_cursor: str | None


class RefundIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: Money | None = Field(default=None, description="omit to refund the rest")
    reason: str | None = Field(default=None, max_length=500)


class RefundOut(BaseModel):
    id: str
    payment_id: str
    amount: Money
    status: str
    reason: str | None
    payment_status: str


class CheckoutIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: Literal["succeeded", "failed"]
    copies: int = Field(default=1, ge=1, le=10,
                        description="deliver each webhook this many times (testing)")
    reverse: bool = Field(default=False, description="deliver the outcome before 'processing'")


class CheckoutOut(BaseModel):
    payment_id: str
    outcome: str
    webhooks_queued: int


class WebhookOut(BaseModel):
    result: Literal["applied", "duplicate", "stale"]
