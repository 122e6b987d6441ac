// Runs seeds: creates them (idempotent by id), persists every transition before its step acts, restores
// unfinished seeds when the agent starts, passes events on, and tells subscribers about every change.
import { setImmediate as nextMacrotask } from 'node:timers/promises';
import type { Actor, AnyStateMachine, Snapshot } from 'xstate';
import type { Config } from '../config.js';
import { AgentError } from '../errors.js';
import type { DatadirOps, MySQLService, SnapshotBackend } from '../host/interfaces.js';
import { log } from '../log.js';
import { withProcessScope } from '../process-runner.js';
import type { CleanupInput, SeedContext, SeedEvent, SeedFacts, StepInput } from '../../machines/seed-common.js';
import type { SourceParams } from '../../machines/seed-source.js';
import type { TargetParams } from '../../machines/seed-target.js';
import { DAEMON_STARTER, reapSeedProcesses, seedTag } from './reaper.js';
import { progressLogger } from './progress-log.js';
import type { SeedMethod } from './seed-method-names.js';
import {
  SEED_FORMAT_VERSION,
  SeedStore,
  type CorruptFile,
  type SeedProgress,
  type SeedRecord,
  type SeedRole,
  type SeedWaiting,
  type SeedWarning,
  type StateDirProblem,
} from './seed-store.js';
import type { CleanupFn } from './steps/cleanup.js';
import type { SeedHandle, StepEnv, StepFn } from './steps/step-env.js';
import type { SeedCheck } from './pre-seed-checks.js';
import type { ReplicationView } from './steps/replication-steps.js';

type SeedRuntime = typeof import('./seed-runtime.js');
let runtime: SeedRuntime | undefined;
let runtimeLoading: Promise<SeedRuntime> | undefined;

/** xstate, the charts and their steps: loaded once, when the first seed is restored or created. */
export function loadSeedRuntime(): Promise<SeedRuntime> {
  return (runtimeLoading ??= import('./seed-runtime.js').then((m) => (runtime = m)));
}

/** The loaded runtime; every caller is reached only through a seed, which exists only once it is loaded. */
function rt(): SeedRuntime {
  if (!runtime) throw new AgentError('internal', 'the seed charts are not loaded', { hint: 'SeedManager.ready() loads them before a seed is created' });
  return runtime;
}

export type SeedStatus = 'active' | 'done' | 'failed' | 'aborted';

export interface SeedView {
  id: string;
  role: SeedRole;
  /** How the data is copied: "snapshot" (also every seed made before methods existed), "backup", "dump". */
  method: SeedMethod;
  machine: string;
  machineVersion: number;
  state: string;
  /** True while a step-by-step seed waits for NEXT. */
  paused: boolean;
  status: SeedStatus;
  /** Events the seed accepts now (POST /api/seeds/:id/events). */
  accepts: string[];
  createdAt: string;
  updatedAt: string;
  params: Record<string, unknown>;
  history: SeedRecord['history'];
  progress: SeedProgress | null;
  /** While a step waits for the other side to come back (a lost sender): since when, until when, why. */
  waiting: SeedWaiting | null;
  /** What the seed met without failing: refused senders, a source that changed while being sent. */
  warnings: SeedWarning[];
  error: { code: string; message: string; hint: string | null } | null;
  transfer: { port: number } | null;
  /** How the data moves: the built-in transfer (a key was handed over) or the configured commands. */
  transport: 'built-in transfer' | 'configured commands';
  /** What the seed's steps have done to this host so far (purgeStarted, transferred, postCopied, mountedBySeed...). */
  marks: string[];
  /** Backup seeds, target: each pre-seed check with pass/fail and a sentence (null until they ran). */
  checks: SeedCheck[] | null;
  /** Seeds with replicate: the replica's threads, where it started from, how far it is (null until set up). */
  replication: ReplicationView | null;
  /** The other half, when this agent linked it (one request for both halves): where it runs and its id. */
  peer: SeedPeer | null;
}

function markJson<T>(marks: Record<string, string>, key: string): T | null {
  try {
    return marks[key] ? (JSON.parse(marks[key]) as T) : null;
  } catch {
    return null;
  }
}

export interface SeedPeer {
  host: string;
  port: number;
  seedId: string;
  role: SeedRole;
}

/** The mark holding a linked seed's peer (JSON), persisted with the seed. */
export const PEER = 'peer';

export interface CreatedSeed {
  view: SeedView;
  created: boolean;
  secrets: Record<string, string>;
}

export interface SeedManagerDeps {
  config: Config;
  mysql: MySQLService;
  datadir: DatadirOps;
  snapshots: SnapshotBackend;
}

/** Params of the snapshot charts; other methods' charts name their own params types. */
export type SeedParamsOf<R extends SeedRole> = R extends 'target' ? TargetParams : SourceParams;

interface PersistedMachine {
  status: string;
  value: unknown;
  context: SeedContext<unknown>;
}

interface LiveSeed {
  record: SeedRecord;
  actor: Actor<AnyStateMachine> | null;
  /**
   * Set when the seed cannot go on in this process: its persisted snapshot could not be restored, or its
   * state could not be saved (StateDir full or read-only). The seed shows as failed with this error; its
   * actor and processes are stopped, and its file keeps the last state saved (a restart resumes there).
   */
  broken: { code: string; message: string; hint: string | null } | null;
  progressSavedAt: number;
  progressTimer: NodeJS.Timeout | null;
  /** The background save on its way to disk, if any; backgroundAgain: save the record again once it is there. */
  backgroundSave: Promise<void> | null;
  backgroundAgain: boolean;
}

function liveSeed(record: SeedRecord): LiveSeed {
  return { record, actor: null, broken: null, progressSavedAt: 0, progressTimer: null, backgroundSave: null, backgroundAgain: false };
}

const FINAL_STATES = new Set(['done', 'failed', 'aborted']);
const PROGRESS_SAVE_INTERVAL_MS = 1000;
const WARNINGS_KEPT = 20;

function persisted(record: SeedRecord): PersistedMachine | null {
  return record.snapshot as PersistedMachine | null;
}

export class SeedManager {
  private readonly store: SeedStore;
  /** Machine id -> version, filled when the runtime loads (the store checks persisted seeds against it). */
  private readonly knownMachines: Record<string, number> = {};
  private readonly seeds = new Map<string, LiveSeed>();
  private readonly listeners = new Set<(view: SeedView) => void>();
  private stopping = false;
  /** Stops what ended seeds still do in the background (farewell-steps.ts) when the agent stops. */
  private readonly background = new AbortController();
  /** The start-up reap: every step and cleanup waits for it, so none acts beside a predecessor's leftovers. */
  private reaped: Promise<unknown> = Promise.resolve();

  constructor(private readonly deps: SeedManagerDeps) {
    this.store = new SeedStore(deps.config.StateDir, this.knownMachines);
  }

  /**
   * Restores every seed in StateDir (loading the charts only when there is one), then, once the caller has
   * gone on to listen, reaps what a predecessor's seed steps left running. No seed step (restored or new)
   * acts before that reap has finished: each waits for it.
   */
  async start(): Promise<void> {
    if (this.store.hasSeedFiles()) await this.ready();
    const records = this.store.loadAll((record) => checkSnapshot(record));
    const pgids = records.flatMap((r) => r.pgids);
    this.reaped = nextMacrotask().then(() => reapSeedProcesses(this.deps.config.StateDir, undefined, pgids));
    this.reaped.catch((err: unknown) => log.error('could not kill what seed steps left running; seed steps fail until the agent is restarted', { error: (err as Error).message }));
    for (const record of records) {
      const live = liveSeed(record);
      this.seeds.set(record.id, live);
      if (this.statusOf(live) === 'active') {
        log.info('restoring unfinished seed', { id: record.id, role: record.role, state: this.stateOf(live) });
        this.markRestart(live);
        this.run(live);
      } else {
        this.afterEnd(record.id, (signal) => rt().resumeAfterEnd(this.handle(live), this.deps.config, signal));
      }
    }
  }

  /** Runs a seed's background task beyond its end (never once the agent is stopping); a failure is logged. */
  private afterEnd(id: string, task: (signal: AbortSignal) => Promise<void>): void {
    if (this.stopping) return;
    void task(this.background.signal).catch((err: unknown) => log.warn('a background task of an ended seed failed', { id, error: (err as Error).message }));
  }

  /** Loads xstate, the charts and their steps (once): routes await it before creating a seed. */
  async ready(): Promise<SeedRuntime> {
    const loaded = await loadSeedRuntime();
    Object.assign(this.knownMachines, loaded.KNOWN_MACHINES);
    return loaded;
  }

  /** The step history shows where an agent restart picked the seed up (and its warnings say so). */
  private markRestart(live: LiveSeed): void {
    const { record } = live;
    const now = new Date().toISOString();
    const entry = record.history.at(-1);
    if (entry) entry.resumedAt = [...(entry.resumedAt ?? []), now].slice(-WARNINGS_KEPT);
    const message = `the agent restarted at ${now}; the seed resumed in ${entry?.state ?? this.stateOf(live)}`;
    record.warnings = [...(record.warnings ?? []), { at: now, message }].slice(-WARNINGS_KEPT);
    record.updatedAt = now;
    this.save(live);
  }

  /**
   * Stops the actors without aborting the seeds: their persisted state is where the next start resumes.
   * A stopped step sees the same abort signal as an ABORT; the steps and the transfer treat it as a cut
   * (process groups get SIGTERM, a transfer connection is closed without telling the peer anything), and
   * only a seed's cleanup tells the peer it ends. Then what the steps ran is killed as the next start would
   * kill it (SIGKILL after a grace), so nothing keeps writing once the agent has exited; the next start runs
   * the interrupted steps again (ensure steps).
   */
  async stop(): Promise<void> {
    this.stopping = true;
    this.background.abort();
    for (const live of this.seeds.values()) {
      if (live.progressTimer) clearTimeout(live.progressTimer);
      live.actor?.stop();
      live.actor = null;
    }
    const pgids = [...this.seeds.values()].flatMap((live) => live.record.pgids);
    await reapSeedProcesses(this.deps.config.StateDir, undefined, pgids).catch((err: unknown) =>
      log.warn('could not kill what seed steps ran before stopping; the next start kills it', { error: (err as Error).message }),
    );
    // A flush stuck on a dead disk must not keep the agent from exiting: the file then keeps its last state.
    let timer: NodeJS.Timeout | undefined;
    const saving = [...this.seeds.values()].flatMap((live) => live.backgroundSave ?? []);
    await Promise.race([Promise.allSettled(saving), new Promise<void>((r) => (timer = setTimeout(r, 10_000)))]);
    clearTimeout(timer);
  }

  create<R extends SeedRole>(
    id: string,
    role: R,
    params: SeedParamsOf<R> | object,
    opts: { timeoutSeconds: number; secrets?: Record<string, string>; method?: SeedMethod },
  ): CreatedSeed {
    const chart = rt().chartFor(opts.method ?? 'snapshot', role);
    const wanted = { ...params, timeoutSeconds: opts.timeoutSeconds } as Record<string, unknown>;
    const existing = this.seeds.get(id);
    if (existing) {
      if (existing.record.role === role && existing.record.machine === chart.machineId && JSON.stringify(existing.record.params) === JSON.stringify(wanted)) {
        return { view: this.view(existing), created: false, secrets: existing.record.secrets };
      }
      throw new AgentError('conflict', `seed ${id} already exists as a ${existing.record.role} seed with other parameters`, {
        hint: `GET /api/seeds/${id} shows it; use another seed id`,
      });
    }
    for (const other of this.seeds.values()) {
      if (other.record.role === role && this.statusOf(other) === 'active') {
        throw new AgentError('conflict', `seed ${other.record.id} is still active as ${role} on this host`, {
          hint: `wait for it to end or abort it (POST /api/seeds/${other.record.id}/events {"type":"ABORT"})`,
        });
      }
    }
    const now = new Date().toISOString();
    const record: SeedRecord = {
      formatVersion: SEED_FORMAT_VERSION,
      id,
      role,
      machine: chart.machineId,
      machineVersion: chart.machineVersion,
      params: wanted,
      secrets: opts.secrets ?? {},
      snapshot: null,
      history: [],
      progress: null,
      pgids: [],
      marks: {},
      createdAt: now,
      updatedAt: now,
    };
    this.store.save(record);
    const live = liveSeed(record);
    this.seeds.set(id, live);
    log.info('seed created', { id, role, params: wanted });
    this.run(live);
    return { view: this.view(live), created: true, secrets: record.secrets };
  }

  send(id: string, event: SeedEvent): SeedView {
    const live = this.require(id);
    const accepted = this.accepts(live);
    if (!live.actor || !accepted.includes(event.type)) {
      throw new AgentError('conflict', `seed ${id} in state ${this.stateOf(live)} does not accept ${event.type}`, {
        hint: accepted.length > 0 ? `it accepts: ${accepted.join(', ')}` : `the seed is ${this.statusOf(live)} and accepts no events`,
      });
    }
    live.actor.send(event);
    return this.view(live);
  }

  /** Records the other half of a seed this agent created on a peer agent (shown in the view, told when this one ends). */
  link(id: string, peer: SeedPeer): SeedView {
    const live = this.require(id);
    live.record.marks[PEER] = JSON.stringify(peer);
    live.record.updatedAt = new Date().toISOString();
    this.saveOrThrow(live);
    this.emit(live);
    return this.view(live);
  }

  get(id: string): SeedView | undefined {
    const live = this.seeds.get(id);
    return live ? this.view(live) : undefined;
  }

  require(id: string): LiveSeed {
    const live = this.seeds.get(id);
    if (!live) throw new AgentError('not_found', `no seed ${id} on this agent`, { hint: 'GET /api/seeds lists the seeds' });
    return live;
  }

  list(): SeedView[] {
    return [...this.seeds.values()].map((live) => this.view(live));
  }

  corruptFiles(): CorruptFile[] {
    return this.store.corruptFiles();
  }

  /** What is wrong with StateDir (at start, or the last failed save); empty when all is well. */
  stateDirProblems(): StateDirProblem[] {
    return this.store.problems();
  }

  subscribe(listener: (view: SeedView) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Original route: the transfer step has finished (well or not), or the seed is over. */
  transferCompleted(id: string): boolean {
    const live = this.seeds.get(id);
    if (!live) return false;
    return this.statusOf(live) !== 'active' || live.record.marks[rt().TRANSFERRED] !== undefined;
  }

  /** Original route: the transfer step finished well (the command exited 0 / the data verified). */
  transferSucceeded(id: string): boolean {
    const live = this.seeds.get(id);
    if (!live) return false;
    return live.record.marks[rt().TRANSFERRED] !== undefined && this.statusOf(live) !== 'failed' && this.statusOf(live) !== 'aborted';
  }

  private run(live: LiveSeed): void {
    const { record } = live;
    const machine = this.machineFor(live);
    const snapshot = persisted(record);
    let actor: Actor<AnyStateMachine>;
    try {
      if (snapshot) {
        actor = rt().createActor(machine, { snapshot: snapshot as unknown as Snapshot<unknown> });
      } else {
        const p = record.params as Record<string, unknown>;
        const timeoutSeconds = typeof p.timeoutSeconds === 'number' ? p.timeoutSeconds : 86400;
        const { timeoutSeconds: _omit, ...params } = p;
        actor = rt().createActor(machine, {
          input: {
            seedId: record.id,
            params,
            seedDeadline: Date.parse(record.createdAt) + timeoutSeconds * 1000,
            connectTimeoutMs: this.deps.config.SeedTransferConnectTimeoutSeconds * 1000,
          },
        });
      }
    } catch (err) {
      live.broken = { code: 'state_corrupt', message: `cannot restore seed ${record.id} from ${this.store.fileOf(record.id)}: ${(err as Error).message}`, hint: null };
      log.error(live.broken.message);
      return;
    }
    live.actor = actor;
    actor.subscribe({
      next: () => this.persistTransition(live),
      error: (err) => log.error('seed actor failed', { id: record.id, error: (err as Error).message }),
    });
    actor.start();
  }

  /** Runs synchronously inside the actor's notification, before any step passes its first await. */
  private persistTransition(live: LiveSeed): void {
    if (this.stopping || !live.actor) return;
    const { record } = live;
    const snap = live.actor.getSnapshot();
    const top = rt().topState(snap.value);
    const now = new Date().toISOString();
    const last = record.history.at(-1);
    if (!last || last.state !== top) {
      if (last && last.leftAt === null) last.leftAt = now;
      record.history.push({ state: top, enteredAt: now, leftAt: null, error: null });
    }
    const error = (snap.context as SeedContext<unknown>).error;
    if (FINAL_STATES.has(top) && error) {
      const failedEntry = [...record.history].reverse().find((h) => h.state === error.step);
      if (failedEntry && failedEntry.error === null) failedEntry.error = error.message;
    }
    record.snapshot = live.actor.getPersistedSnapshot();
    record.updatedAt = now;
    if (FINAL_STATES.has(top)) record.waiting = null;
    if (!this.save(live)) return;
    if (FINAL_STATES.has(top)) {
      log.info(`seed ${top}`, { id: record.id, error: error?.message });
      if (live.progressTimer) clearTimeout(live.progressTimer);
      live.actor = null;
    }
    this.emit(live);
  }

  /**
   * Saves the record; on failure holds the seed (see hold) and answers false. Never throws: it runs inside
   * the actor's subscription and in timers, where a throw would take the whole agent down.
   */
  private save(live: LiveSeed): boolean {
    // A held seed's steps may still call in before they see their abort: its file keeps the last state saved.
    if (live.broken) return false;
    try {
      this.store.save(live.record);
      return true;
    } catch (err) {
      this.hold(live, err);
      return false;
    }
  }

  /**
   * News that may wait (progress, a tagged process's group) goes to disk off the event loop
   * (SeedStore.saveInBackground), one write at a time per seed: a request while one is on its way saves the
   * then latest record after it. A failure holds the seed, as any failed save does.
   */
  private saveInBackground(live: LiveSeed): void {
    if (live.broken || this.stopping) return;
    if (live.backgroundSave) {
      live.backgroundAgain = true;
      return;
    }
    live.backgroundSave = this.store
      .saveInBackground(live.record)
      .catch((err: unknown) => this.hold(live, err))
      .finally(() => {
        live.backgroundSave = null;
        if (live.backgroundAgain) {
          live.backgroundAgain = false;
          this.saveInBackground(live);
        }
      });
  }

  /** For steps (mark, setWaiting): holds the seed, then throws so the step stops where it is. */
  private saveOrThrow(live: LiveSeed): void {
    if (!this.save(live)) throw new AgentError('io', live.broken!.message, { hint: live.broken!.hint ?? undefined });
  }

  /**
   * The seed's state cannot be saved: stop its actor (its steps see their abort signal before they act) and
   * kill its processes, and show it failed with the reason. Its file keeps the last state saved, so an agent
   * restarted once StateDir is writable again resumes it there. Other seeds and every route go on.
   */
  private hold(live: LiveSeed, err: unknown): void {
    if (live.broken || this.stopping) return;
    const e = err instanceof AgentError ? err : new AgentError('io', (err as Error).message);
    const lastSaved = this.store.fileOf(live.record.id);
    live.broken = {
      code: 'state_unwritable',
      message: `seed ${live.record.id} stopped: its state could not be saved (${e.message})`,
      hint: `${e.hint ?? 'make StateDir writable'}; the seed resumes from the last state saved in ${lastSaved}, or abort it after the restart`,
    };
    log.error('seed held: its state cannot be saved; its steps and processes are stopped, the agent goes on', {
      id: live.record.id,
      error: e.message,
      hint: e.hint,
    });
    if (live.progressTimer) clearTimeout(live.progressTimer);
    live.progressTimer = null;
    const actor = live.actor;
    live.actor = null;
    // Stopped after the notification that is running now, still before any step passes its first await.
    queueMicrotask(() => actor?.stop());
    void reapSeedProcesses(this.deps.config.StateDir, live.record.id, live.record.pgids).catch((reapErr: unknown) =>
      log.warn('could not kill the processes of a held seed', { id: live.record.id, error: (reapErr as Error).message }),
    );
    this.emit(live);
  }

  private emit(live: LiveSeed): void {
    const view = this.view(live);
    for (const listener of this.listeners) {
      try {
        listener(view);
      } catch (err) {
        log.warn('seed listener failed', { error: (err as Error).message });
      }
    }
  }

  private handle(live: LiveSeed): SeedHandle {
    const { record } = live;
    const logProgress = progressLogger(record.id, record.role);
    return {
      id: record.id,
      marks: () => record.marks,
      secrets: () => record.secrets,
      mark: (key, value) => {
        record.marks[key] = value;
        record.updatedAt = new Date().toISOString();
        this.saveOrThrow(live);
      },
      setWaiting: (waiting) => {
        if (JSON.stringify(record.waiting ?? null) === JSON.stringify(waiting)) return;
        record.waiting = waiting;
        record.updatedAt = new Date().toISOString();
        this.saveOrThrow(live);
        this.emit(live);
      },
      warn: (message) => {
        log.warn('seed warning', { id: record.id, warning: message });
        const now = new Date().toISOString();
        record.warnings = [...(record.warnings ?? []), { at: now, message }].slice(-WARNINGS_KEPT);
        record.updatedAt = now;
        if (!this.stopping) this.save(live);
        this.emit(live);
      },
      setProgress: (progress) => {
        record.progress = progress;
        if (progress) logProgress(progress);
        this.emit(live);
        const wait = live.progressSavedAt + PROGRESS_SAVE_INTERVAL_MS - Date.now();
        if (wait <= 0) {
          live.progressSavedAt = Date.now();
          this.saveInBackground(live);
        } else if (!live.progressTimer) {
          live.progressTimer = setTimeout(() => {
            live.progressTimer = null;
            live.progressSavedAt = Date.now();
            this.saveInBackground(live);
          }, wait);
        }
      },
    };
  }

  private env(live: LiveSeed): StepEnv {
    const { config, mysql, datadir, snapshots } = this.deps;
    return {
      config,
      mysql,
      datadir,
      snapshots,
      seed: this.handle(live),
      daemonStarter: (fn) => this.scoped(live, fn, DAEMON_STARTER),
      afterEnd: (task) => this.afterEnd(live.record.id, task),
      killSeedProcesses: async () => {
        await reapSeedProcesses(config.StateDir, live.record.id, live.record.pgids);
      },
    };
  }

  /**
   * Every step: wait one macrotask (the transition is on disk by then) and for the start-up reap, then act
   * inside the seed's process scope.
   */
  private step<P>(live: LiveSeed, fn: StepFn<P>) {
    return rt().fromPromise<SeedFacts, StepInput<P>>(async ({ input, signal }) => {
      await nextMacrotask();
      await this.reaped;
      signal.throwIfAborted();
      return this.scoped(live, () => fn(input, signal, this.env(live)));
    });
  }

  private cleanup<P>(live: LiveSeed, fn: CleanupFn<P>) {
    return rt().fromPromise<SeedFacts, CleanupInput<P>>(async ({ input, signal }) => {
      await nextMacrotask();
      await this.reaped;
      // A stopped actor (agent stopping, seed held) must not clean up: the next start resumes the cleanup.
      signal.throwIfAborted();
      return this.scoped(live, () => fn(input, signal, this.env(live)));
    });
  }

  private scoped<T>(live: LiveSeed, fn: () => Promise<T>, suffix = ''): Promise<T> {
    const { record } = live;
    return withProcessScope(
      {
        tag: seedTag(this.deps.config.StateDir, record.id) + suffix,
        onStart: (pgid) => {
          if (this.stopping) return;
          record.pgids.push(pgid);
          // A failed save holds the seed (and kills this process with its others); runCommand goes on.
          // A daemon starter's group is reaped only when recorded, so it is on disk before we go on. Any
          // other process carries the seed's tag, which a restarted agent finds without the record: its
          // group goes to disk off the event loop (a flush here waited 0.37 s at the `sync -f` that ends a
          // backup stream, with the copy's data being written back).
          if (suffix === DAEMON_STARTER) this.save(live);
          else this.saveInBackground(live);
        },
      },
      fn,
    );
  }

  /** The seed's chart with its steps, each run inside the seed's process scope after its transition is on disk. */
  private machineFor(live: LiveSeed): AnyStateMachine {
    const chart = rt().chartOf(live.record.machine);
    const actors: Record<string, unknown> = { cleanup: this.cleanup(live, chart.cleanup) };
    for (const [name, fn] of Object.entries(chart.steps)) actors[name] = this.step(live, fn);
    return chart.machine.provide({ actors } as never);
  }

  private stateOf(live: LiveSeed): string {
    const snap = persisted(live.record);
    if (!snap) return rt().chartOf(live.record.machine).firstState;
    return rt().topState(snap.value);
  }

  private statusOf(live: LiveSeed): SeedStatus {
    if (live.broken) return 'failed';
    const state = this.stateOf(live);
    return FINAL_STATES.has(state) ? (state as SeedStatus) : 'active';
  }

  private accepts(live: LiveSeed): string[] {
    if (!live.actor) return [];
    const snap = live.actor.getSnapshot();
    return (['NEXT', 'ABORT'] as const).filter((type) => snap.can({ type }));
  }

  view(live: LiveSeed): SeedView {
    const { record } = live;
    const snap = persisted(record);
    const error = live.broken ?? snap?.context.error ?? null;
    const isTarget = record.role === 'target';
    const port = isTarget && typeof record.params.port === 'number' ? record.params.port : undefined;
    return {
      id: record.id,
      role: record.role,
      method: rt().chartOf(record.machine).method,
      machine: record.machine,
      machineVersion: record.machineVersion,
      state: this.stateOf(live),
      paused: snap ? rt().subState(snap.value) === 'paused' : false,
      status: this.statusOf(live),
      accepts: this.accepts(live),
      createdAt: record.createdAt,
      updatedAt: record.updatedAt,
      params: record.params,
      history: record.history,
      progress: record.progress,
      waiting: this.statusOf(live) === 'active' ? (record.waiting ?? null) : null,
      warnings: record.warnings ?? [],
      error: error ? { code: error.code, message: error.message, hint: error.hint ?? null } : null,
      transfer: port !== undefined ? { port } : null,
      transport: record.secrets.authKey ? 'built-in transfer' : 'configured commands',
      marks: Object.keys(record.marks),
      checks: markJson<SeedCheck[]>(record.marks, rt().CHECKS),
      replication: markJson<ReplicationView>(record.marks, rt().REPLICATION),
      peer: markJson<SeedPeer>(record.marks, PEER),
    };
  }
}

const CONTEXT_KEYS = ['seedId', 'params', 'deadlines', 'facts', 'error', 'endReason', 'connectTimeoutMs'] as const;

/**
 * A persisted snapshot must be a state of its seed's chart with the context the steps read: checked when
 * loaded, so a bad one is moved aside like an unparsable file instead of failing later (or at once).
 */
export function checkSnapshot(record: SeedRecord): void {
  const chart = rt().KNOWN_MACHINES[record.machine] === undefined ? undefined : rt().chartOf(record.machine);
  if (!chart || chart.role !== record.role) throw new Error(`a ${record.role} seed cannot run machine ${record.machine}`);
  const snap = record.snapshot as Record<string, unknown> | null;
  if (snap === null) return;
  const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (!['active', 'done', 'error', 'stopped'].includes(snap.status as string)) throw new Error(`snapshot.status ${JSON.stringify(snap.status)} is not an actor status`);
  const ctx = snap.context;
  if (!isObject(ctx)) throw new Error('snapshot.context is not an object');
  if (ctx.error !== null && !(isObject(ctx.error) && typeof ctx.error.message === 'string')) throw new Error('snapshot.context.error is neither null nor an error');
  // A finished seed is only shown (state, error); an unfinished one runs again and needs all its steps read.
  if (snap.status === 'done' && typeof snap.value === 'string' && FINAL_STATES.has(snap.value)) return;
  for (const key of CONTEXT_KEYS) if (!(key in ctx)) throw new Error(`snapshot.context has no ${key}`);
  if (ctx.seedId !== record.id) throw new Error(`snapshot.context.seedId ${JSON.stringify(ctx.seedId)} is not the seed's id ${record.id}`);
  const d = ctx.deadlines;
  if (!isObject(d) || typeof d.seed !== 'number' || !(d.connect === null || typeof d.connect === 'number')) throw new Error('snapshot.context.deadlines is not {seed, connect}');
  if (!isObject(ctx.params) || !isObject(ctx.facts)) throw new Error('snapshot.context.params or facts is not an object');
  if (snap.children !== undefined && !isObject(snap.children)) throw new Error('snapshot.children is not an object');
  const machine: AnyStateMachine = chart.machine;
  const restored = rt().createActor(machine, { snapshot: snap as unknown as Snapshot<unknown> }).getSnapshot() as unknown as {
    status: string;
    error?: unknown;
    can?: unknown;
  };
  if (restored.status === 'error' || typeof restored.can !== 'function') {
    const why = restored.error instanceof Error ? restored.error.message : `value ${JSON.stringify(snap.value)}`;
    throw new Error(`snapshot is not a state of ${record.machine}: ${why}`);
  }
}
