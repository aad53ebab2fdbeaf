"""A standalone receiver process for the durability test and the benchmark (a test helper, not shipped).

    ERPSYNC_WEBHOOK_SECRET=… python tests/webhooks/run_receiver.py --db sqlite:///state.db [--port 0]

Prints `READY <url>` on stdout once listening; stops cleanly on SIGTERM/SIGINT. The secret comes from the
environment, never argv (argv is visible to every user in `ps`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal

from erpsync_tui.config import AppConfig
from erpsync_tui.store import open_database
from erpsync_tui.webhooks import create_app, serve_receiver


def _config(max_body_bytes: int) -> AppConfig:
    return AppConfig.model_validate(
        {
            "sites": {"cloud": {"url": "http://127.0.0.1:1"}, "local": {"url": "http://127.0.0.1:2"}},
            "webhooks": {"max_body_bytes": max_body_bytes},
        }
    )


async def _main(args: argparse.Namespace) -> None:
    db = open_database(args.db)
    app = create_app(_config(args.max_body_bytes), db, webhook_secret=os.environ.get("ERPSYNC_WEBHOOK_SECRET"))
    handle = await serve_receiver(app, args.host, args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"READY {handle.url}", flush=True)
    await stop.wait()
    await handle.stop()
    db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="SQLAlchemy URL of the state database")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-body-bytes", type=int, default=1_048_576)
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
