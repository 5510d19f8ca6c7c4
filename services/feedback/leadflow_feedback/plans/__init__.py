"""Corrective plans as records: opened when a party owes one, worked through actions."""
