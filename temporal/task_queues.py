"""Task-queue names. One queue per kind of work so each can be scaled with its own workers."""

ORDERS = "broker-orders"
PAYMENTS = "broker-payments"
OPS = "broker-ops"
KYC = "broker-kyc"

ALL = (ORDERS, PAYMENTS, OPS, KYC)
