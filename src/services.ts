// What the HTTP layer and the machines are given: configuration and the narrow interfaces to the host.
import type { Config } from './config.js';
import type { DatadirOps, MySQLService, SnapshotBackend } from './host/interfaces.js';
import type { RegistrationStatus } from './registration.js';
import type { SeedManager } from './seeds/seed-manager.js';

/** Registration's view for the status endpoint: when orchestrator last answered us. */
export interface ContactStatus {
  /** ms since epoch of the last successful call to orchestrator, or undefined if never. */
  lastContactAt(): number | undefined;
}

export interface AgentServices {
  config: Config;
  /** The process token orchestrator must present. */
  token: string;
  /** When this agent process started (ms since epoch). */
  startedAt: number;
  contact: ContactStatus;
  /** MySQL service control through the operator's configured commands. */
  mysql: MySQLService;
  /** Datadir size, free space and purge (behind guardrails). */
  datadir: DatadirOps;
  /** Registration with orchestrator, for GET /api/registration (absent in tests that build an app alone). */
  registration?: { status(): RegistrationStatus };
  /** LVM or btrfs snapshots and the snapshot mount point. */
  snapshots: SnapshotBackend;
  /** Seeds: durable target/source machines (absent in tests that build an app alone). */
  seeds?: SeedManager;
}
