"""Governance: prices and cost, budgets, model rules (addons on the flow)."""
