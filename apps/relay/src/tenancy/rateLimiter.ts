/**
 * Per-tenant requests-per-minute, fleet-wide. Fixed one-minute windows (UTC minutes). Each node
 * counts locally and, every syncMs, adds what it counted to the shared counter and reads the
 * fleet's total back; a request is admitted while (fleet total at the last sync + counted here
 * since) is under the quota. So the fleet may overshoot by what other nodes admit within one sync
 * period, and never needs a round trip on a request. Without Redis the count is exact.
 */
import type { Fleet } from './fleet';

interface Window {
  minute: number;
  /** Fleet total as of the last sync (including this node's synced requests). */
  fleetTotal: number;
  /** Requests admitted here since the last sync. */
  unsynced: number;
}

export type RateDecision = { readonly ok: true } | { readonly ok: false; readonly retryAfterS: number };

const OK: RateDecision = { ok: true };

export class RateLimiter {
  private readonly windows = new Map<string, Window>();
  private timer: NodeJS.Timeout | undefined;
  private syncing = false;

  constructor(
    private readonly fleet: Fleet,
    private readonly syncMs = 1000,
    private readonly now: () => number = Date.now,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.sync(), this.syncMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Counts one request of `tenant` against `perMinute`, or refuses it. */
  take(tenant: string, perMinute: number): RateDecision {
    const nowMs = this.now();
    const minute = Math.floor(nowMs / 60_000);
    let w = this.windows.get(tenant);
    if (w === undefined || w.minute !== minute) {
      w = { minute, fleetTotal: 0, unsynced: 0 };
      this.windows.set(tenant, w);
    }
    if (w.fleetTotal + w.unsynced >= perMinute) {
      return { ok: false, retryAfterS: Math.max(1, Math.ceil(((minute + 1) * 60_000 - nowMs) / 1000)) };
    }
    w.unsynced++;
    return OK;
  }

  /** Pushes local counts to the fleet counter and reads totals back; drops finished windows. */
  async sync(): Promise<void> {
    if (this.syncing) return;
    this.syncing = true;
    try {
      const minute = Math.floor(this.now() / 60_000);
      const jobs: Promise<void>[] = [];
      for (const [tenant, w] of this.windows) {
        if (w.minute !== minute) {
          this.windows.delete(tenant);
          continue;
        }
        const delta = w.unsynced;
        w.unsynced = 0;
        jobs.push(
          this.fleet.addRequests(tenant, w.minute, delta).then(
            (total) => {
              if (w.minute === minute) w.fleetTotal = Math.max(w.fleetTotal, total);
            },
            () => {
              w.unsynced += delta; // the bus is down: keep counting locally, push later
            },
          ),
        );
      }
      await Promise.all(jobs);
    } finally {
      this.syncing = false;
    }
  }
}
