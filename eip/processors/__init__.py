"""Compiled processors, one module per EIP. See :mod:`eip.processors.base` for the contract."""
