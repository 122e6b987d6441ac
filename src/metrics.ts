// Prometheus metrics for one agent: seeds by state, bytes moved, seed durations, step failures and
// whether orchestrator is reaching us. Fed by the seed feed's change events; gauges are computed when
// scraped so they never drift from the seed manager's own view.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Config } from './config.js';
import type { DatadirOps, MySQLService } from './host/interfaces.js';
import type { ContactStatus } from './services.js';
import { transferStats } from './transfer/stats.js';
import { toMillis, type SeedFeed, type SeedView } from './seed-feed.js';
import { version } from './version.js';

export interface AgentMetrics {
  registry: Registry;
  /** Feeds one seed view (what the seed feed emits on every change). */
  observe(view: SeedView): void;
  /** The exposition text and its content type. */
  render(): Promise<{ contentType: string; body: string }>;
}

interface Seen {
  status: SeedView['status'];
  bytesDone: number;
  failedSteps: number;
}

const prefix = 'orchestrator_agent_';

/** The host facts read at each scrape (absent in tests that only look at seeds). */
export interface MetricsHost {
  mysql: Pick<MySQLService, 'isRunning' | 'datadir'>;
  datadir: Pick<DatadirOps, 'availableSpace'>;
}

/** A scrape must not wait for a slow command as long as a seed step may. */
const scrapeCommandTimeoutMs = 5000;

export function createMetrics(config: Config, contact: ContactStatus, seeds?: SeedFeed, host?: MetricsHost, baseline: SeedView[] = seeds?.list() ?? []): AgentMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });

  new Gauge({
    name: `${prefix}build_info`,
    help: 'Always 1; the agent version (package.json) in the label.',
    labelNames: ['version'] as const,
    registers: [registry],
  }).set({ version }, 1);

  new Gauge({
    name: `${prefix}seeds`,
    help: 'Seeds known to this agent, by role, current state and status (active, done, failed, aborted).',
    labelNames: ['role', 'state', 'status'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const view of seeds?.list() ?? []) this.inc({ role: view.role, state: view.state, status: view.status });
    },
  });
  const bytes = new Counter({
    name: `${prefix}seed_bytes_transferred_total`,
    help: 'Bytes of seed data sent or received by this agent process, by role.',
    labelNames: ['role'] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: `${prefix}seed_duration_seconds`,
    help: 'Wall time from a seed being created to it ending, by role and outcome (done, failed, aborted).',
    labelNames: ['role', 'outcome'] as const,
    buckets: [60, 300, 900, 1800, 3600, 7200, 14400, 28800, 57600, 86400],
    registers: [registry],
  });
  const stepFailures = new Counter({
    name: `${prefix}seed_step_failures_total`,
    help: 'Seed steps that ended in an error, by machine and step (state).',
    labelNames: ['machine', 'step'] as const,
    registers: [registry],
  });
  new Gauge({
    name: `${prefix}registered`,
    help: `1 while orchestrator has reached this agent within StatusBadSeconds (${config.StatusBadSeconds}s), else 0.`,
    registers: [registry],
    collect() {
      const last = contact.lastContactAt();
      this.set(last !== undefined && Date.now() - last <= config.StatusBadSeconds * 1000 ? 1 : 0);
    },
  });
  new Gauge({
    name: `${prefix}state_dir_problems`,
    help: 'Problems with StateDir now (cannot be created, read or written, full; GET /api/seeds says which); 0 when all is well.',
    registers: [registry],
    collect() {
      this.set(seeds?.stateDirProblems?.().length ?? 0);
    },
  });
  new Gauge({
    name: `${prefix}corrupt_state_files`,
    help: 'Seed state files found corrupt at start (moved to StateDir/seeds/corrupt/ when possible; listed in GET /api/seeds).',
    registers: [registry],
    collect() {
      this.set(seeds?.corruptFiles?.().length ?? 0);
    },
  });
  new Gauge({
    name: `${prefix}last_contact_timestamp_seconds`,
    help: 'Unix time of the last successful exchange with orchestrator (0 if none since start).',
    registers: [registry],
    collect() {
      this.set((contact.lastContactAt() ?? 0) / 1000);
    },
  });

  // Per seed, while it is active: where its transfer stands.
  new Gauge({
    name: `${prefix}seed_bytes_done`,
    help: 'Bytes of the current transfer done, per active seed.',
    labelNames: ['seed', 'role'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const view of seeds?.list() ?? []) {
        if (view.status === 'active' && view.progress) this.set({ seed: view.id, role: view.role }, view.progress.bytesDone);
      }
    },
  });
  new Gauge({
    name: `${prefix}seed_bytes_total`,
    help: 'Bytes the current transfer will move, per active seed (absent while unknown).',
    labelNames: ['seed', 'role'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const view of seeds?.list() ?? []) {
        if (view.status === 'active' && typeof view.progress?.bytesTotal === 'number') this.set({ seed: view.id, role: view.role }, view.progress.bytesTotal);
      }
    },
  });
  new Counter({
    name: `${prefix}transfer_connections_refused_total`,
    help: 'Connections to a built-in transfer receiver that were refused (wrong key, TLS mismatch, bad handshake).',
    registers: [registry],
    collect() {
      this.reset();
      if (transferStats.refusedConnections > 0) this.inc(transferStats.refusedConnections);
    },
  });
  if (host) {
    if (config.MySQLServiceStatusCommand.trim() !== '') {
      new Gauge({
        name: `${prefix}mysql_up`,
        help: 'MySQLServiceStatusCommand at scrape time: 1 running (exit 0), 0 not running, NaN when the command could not run.',
        registers: [registry],
        async collect() {
          this.reset();
          try {
            this.set((await host.mysql.isRunning(AbortSignal.timeout(scrapeCommandTimeoutMs))) ? 1 : 0);
          } catch {
            this.set(NaN); // unknown is not "down"
          }
        },
      });
    }
    if (config.MySQLDatadirCommand.trim() !== '') {
      new Gauge({
        name: `${prefix}datadir_free_bytes`,
        help: 'Bytes available on the filesystem holding the MySQL datadir (MySQLDatadirCommand), at scrape time; NaN when unknown.',
        registers: [registry],
        async collect() {
          this.reset();
          try {
            this.set(await host.datadir.availableSpace(await host.mysql.datadir(AbortSignal.timeout(scrapeCommandTimeoutMs))));
          } catch {
            this.set(NaN); // the datadir cannot be found or read: unknown, not 0
          }
        },
      });
    }
  }

  // Counters count what happens while this process watches: seeds already present at start are a
  // baseline (their past traffic and failures were counted by the process that ran them).
  const seen = new Map<string, Seen>();
  const erroredSteps = (view: SeedView) => view.history.filter((h) => h.error !== null && h.error !== undefined);
  const observe = (view: SeedView): void => {
    const errored = erroredSteps(view);
    const bytesDone = view.progress?.bytesDone ?? 0;
    const before = seen.get(view.id) ?? { status: 'active', bytesDone: 0, failedSteps: 0 };
    seen.set(view.id, { status: view.status, bytesDone: Math.max(bytesDone, before.bytesDone), failedSteps: Math.max(errored.length, before.failedSteps) });
    if (bytesDone > before.bytesDone) bytes.inc({ role: view.role }, bytesDone - before.bytesDone);
    // An operator's ABORT ends the seed with the aborted step marked, but no step failed.
    if (view.status !== 'aborted') for (const entry of errored.slice(before.failedSteps)) stepFailures.inc({ machine: view.machine, step: entry.state });
    if (before.status === 'active' && view.status !== 'active') {
      // A seed that failed without an errored history entry still counts once, at its last step.
      if (view.status === 'failed' && errored.length === 0 && before.failedSteps === 0) {
        const last = view.history.filter((h) => h.state !== view.state).at(-1)?.state ?? view.state;
        stepFailures.inc({ machine: view.machine, step: last });
      }
      const start = toMillis(view.createdAt);
      const end = toMillis(view.updatedAt) ?? Date.now();
      if (start !== undefined) duration.observe({ role: view.role, outcome: view.status }, Math.max(0, (end - start) / 1000));
    }
  };
  for (const view of baseline) {
    seen.set(view.id, { status: view.status, bytesDone: view.progress?.bytesDone ?? 0, failedSteps: erroredSteps(view).length });
  }

  return {
    registry,
    observe,
    async render() {
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
  };
}
