"""Backends of the EventStore protocol; code above the store names none of them."""
