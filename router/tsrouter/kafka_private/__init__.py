"""Every use of kafka-python's private API, in one place."""
