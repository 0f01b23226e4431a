"""channels.testing.WebsocketCommunicator, importable without daphne.

channels.testing's package __init__ imports its live-server test case, which needs daphne (not a
SafeRoll dependency: uvicorn serves ASGI here). The communicator itself only needs asgiref, so
when daphne is missing its two modules are loaded from channels' own files, unchanged."""

import importlib.util
import sys
import types
from pathlib import Path

try:
    from channels.testing import WebsocketCommunicator
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the environment
    if exc.name != "daphne" and not (exc.name or "").startswith("daphne."):
        raise
    import channels

    folder = Path(channels.__file__).parent / "testing"
    package = types.ModuleType("channels.testing")
    package.__path__ = [str(folder)]
    sys.modules.setdefault("channels.testing", package)
    for name in ("application", "websocket"):
        spec = importlib.util.spec_from_file_location(f"channels.testing.{name}", folder / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    WebsocketCommunicator = sys.modules["channels.testing.websocket"].WebsocketCommunicator

__all__ = ["WebsocketCommunicator"]
