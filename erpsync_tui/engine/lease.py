"""The engine lease as the service keeps it: a standby's wait (receiving webhooks meanwhile) and the heartbeat.

One engine per database holds the lease (store/control.py); it renews it every `lease_ttl / 3` with what
`status`, doctor and the console read of it, and stops at once if it finds the lease lost. `LeaseKeeping` is a
mixin of `EngineService` (engine/service.py), which supplies the owner, the receiver, the metrics and `stop()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from erpsync_tui import __version__
from erpsync_tui.store import control
from erpsync_tui.store.control import LeaseHeld
from erpsync_tui.store.models import utcnow

log = logging.getLogger("erpsync.service")

LEASE_MARGIN = 0.05  # a standby tries this long after the expiry it read (both ends' clocks are UTC)
RECEIVER_RETRY = 1.0  # a standby whose receiver port is taken (the holder on the same host) retries this often
REJECTION_WINDOW_SECONDS = 15 * 60  # health.REJECTION_WINDOW_MINUTES: refused webhooks reported over this window

# The renewal's own thread: under load every thread of the default pool can be busy with sync work waiting on the
# database, and a renewal queued behind them lets the lease lapse — the engine then stops itself mid-traffic.
_RENEWER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="erpsync-lease")


class LeaseKeeping:
    async def _try_receiver_while_waiting(self) -> None:
        """Start the receiver if its port is free; a standby on the holder's own host finds it taken (the
        holder listens there) and tries again while it waits, so it listens as soon as the holder is gone."""
        if self._start_receiver is None or self.receiver is not None:
            return
        try:
            await self._start_receiver_once()
        except OSError as exc:
            if not self._receiver_port_note:
                log.warning("standby: the webhook receiver cannot listen yet (%s); trying again while waiting "
                            "code=ERP006", exc.strerror or exc)
                self._receiver_port_note = True

    async def _wait_for_lease(self, held: LeaseHeld) -> bool:
        """Sleep until the expiry the holder last wrote, then try again; True once the lease is ours.

        Not a fixed poll: a dead holder's lease is taken within a moment of its expiry, i.e. within
        `lease_ttl_seconds` of its last renewal (a live holder renews first, and the next expiry is read).
        Expiry and "now" are both UTC wall clocks: hosts must keep their clocks in sync (NTP).
        """
        log.info("waiting for the engine lease: %s", held)
        while True:
            delay = (held.lease.expires_at - utcnow()).total_seconds() + LEASE_MARGIN
            delay = min(max(delay, LEASE_MARGIN), self.lease_ttl)  # a row from a skewed clock cannot park us
            if self._start_receiver is not None and self.receiver is None:
                delay = min(delay, RECEIVER_RETRY)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            if self._stopping.is_set():
                return False
            await self._try_receiver_while_waiting()
            if (held.lease.expires_at - utcnow()).total_seconds() > 0:
                continue  # woken early to retry the receiver: the lease we read is still live
            try:
                lease = await asyncio.to_thread(control.acquire_lease, self.db, self.owner, self.lease_ttl)
            except LeaseHeld as again:
                held = again
                continue
            except Exception:  # the database is unreachable for a moment: keep waiting, keep receiving
                log.exception("lease attempt failed code=ERP010")
                continue
            waited = (lease.acquired_at - held.lease.heartbeat_at).total_seconds()
            log.warning("took over the engine lease from %s (host %s, pid %s) %.2f s after its last renewal",
                        held.lease.holder, held.lease.hostname, held.lease.pid, waited)
            return True

    async def _heartbeat_loop(self) -> None:
        while not self._stopping.is_set():
            circuits = {site: c.circuit_state for site, c in self.connectors.items()}
            for site, state in circuits.items():
                self.metrics.set_circuit(site, state)
            info = {"circuits": circuits, "version": __version__, "receiver": getattr(self.receiver, "url", None),
                    # What doctor reads of this engine (its environment may differ from the operator's shell).
                    "webhook_secret": self._webhook_secret_configured(),
                    "webhooks_rejected_recent": self._recent_rejections(),
                    "echoes_skipped": self.engine.echoes_skipped}
            self.metrics.set_echoes(self.engine.echoes_skipped)
            try:
                renewed = await asyncio.get_running_loop().run_in_executor(
                    _RENEWER, control.renew_lease, self.db, self.owner, self.lease_ttl, info)
                if not renewed:
                    log.error("lost the engine lease code=ERP010; stopping so two engines never run at once")
                    self._spawn(self.stop())
                    return
            except Exception:
                log.exception("lease renewal failed code=ERP010")
            await asyncio.sleep(self.lease_ttl / 3)

    def _webhook_secret_configured(self) -> bool | None:
        """None without a receiver; else whether the receiver verifies with a secret. The receiver itself says so
        (the demo and tests hand it one directly); only a receiver that cannot tell is judged by the secret store."""
        if self.receiver is None:
            return None
        told = getattr(self.receiver, "secret_configured", None)
        if told is not None:
            return bool(told)
        from erpsync_tui import secrets as secret_store

        return secret_store.lookup(secret_store.WEBHOOK_REF).value is not None

    def _recent_rejections(self) -> dict[str, int]:
        """Webhooks refused per reason over the last REJECTION_WINDOW (counter deltas kept at each heartbeat)."""
        now = time.monotonic()
        totals = self.metrics.rejected_totals()
        self._rejection_history.append((now, totals))
        while self._rejection_history and now - self._rejection_history[0][0] > REJECTION_WINDOW_SECONDS:
            self._rejection_history.popleft()
        oldest = self._rejection_history[0][1]
        return {reason: n - oldest.get(reason, 0) for reason, n in totals.items() if n - oldest.get(reason, 0)}
