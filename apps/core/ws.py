"""WebSocket authentication stack (session cookie for browsers; token in the first message for API clients)."""

from channels.auth import AuthMiddlewareStack


def websocket_stack(inner):
    return AuthMiddlewareStack(inner)
