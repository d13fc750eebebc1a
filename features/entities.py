"""Entities: who features describe."""
from feast import Entity, ValueType

customer = Entity(
    name="customer",
    join_keys=["customer_id"],
    value_type=ValueType.STRING,
    description="An identified customer: the customer_id of the signal contract. Anonymous visitors have no features.",
)
