"""The webhook receiver: verifies Frappe's signed webhooks and stores them in the durable queue.

`create_app` builds the Starlette app (POST /webhook/{site}, GET /health, /status, /metrics);
`serve_receiver` runs it with uvicorn inside the caller's event loop.
"""

from erpsync_tui.webhooks.app import create_app
from erpsync_tui.webhooks.parsing import SIGNATURE_HEADER, sign
from erpsync_tui.webhooks.server import ReceiverHandle, serve_receiver

__all__ = ["SIGNATURE_HEADER", "ReceiverHandle", "create_app", "serve_receiver", "sign"]
