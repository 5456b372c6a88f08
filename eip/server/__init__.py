"""The long-running integration server's own parts: the operations endpoints
(:mod:`eip.server.management`). HTTP routes themselves run on :mod:`eip.components.http`."""
