"""Transports. Each module holds an endpoint spec (a frozen msgspec Struct, also reachable as a
URI), a producer and, where it makes sense, a consumer."""
