// Runs the registration machine for this agent process: the actors are the two calls to orchestrator,
// and the running actor's context answers the status endpoint (lastContactAt) and GET /api/registration.
// xstate and the machine load when registration starts (after the API listens), not with the agent.
import type { Actor, SnapshotFrom } from 'xstate';
import type { registrationMachine, RegistrationOptions } from '../machines/registration.js';
import type { Config } from './config.js';
import { log } from './log.js';
import { OrchestratorClient, orchestratorClientOptions } from './orchestrator-client.js';
import type { ContactStatus } from './services.js';

export interface RegistrationStatus {
  /** 'not started', 'submitting', 'registered.waiting', 'registered.pinging', 'backoff' or 'stopped'. */
  state: string;
  registered: boolean;
  orchestrator: string;
  hostname: string | null;
  httpPort: number | null;
  lastContactAt: string | null;
  lastSubmittedAt: string | null;
  /** The last failure, kept after recovery; compare lastFailureAt with lastContactAt. */
  lastError: string | null;
  lastFailureAt: string | null;
  /** Consecutive failures since the last success. */
  failures: number;
  /** When the next call to orchestrator is due: a retry, a ping or a resubmit, whichever is first. */
  nextAttemptAt: string | null;
  nextPingAt: string | null;
  nextResubmitAt: string | null;
  nextRetryAt: string | null;
}

export const defaultBackoff = { backoffInitialMs: 1000, backoffMaxMs: 60_000 } as const;

/** The original's keys, in the units they are configured in, to the machine's milliseconds. */
export function registrationOptionsFromConfig(config: Config): RegistrationOptions {
  return {
    pingIntervalMs: config.ContinuousPollSeconds * 1000,
    resubmitIntervalMs: config.ResubmitAgentIntervalMinutes * 60_000,
    ...defaultBackoff,
  };
}

/** The machine with its actors (the real calls to orchestrator through `client`), started. */
async function startRegistrationActor(client: OrchestratorClient, agent: { hostname: string; httpPort: number; token: string }, options: RegistrationOptions) {
  const [{ createActor, fromPromise }, { registrationMachine: machine }] = await Promise.all([import('xstate'), import('../machines/registration.js')]);
  const logic = machine.provide({
    actors: {
      submitAgent: fromPromise<string>(({ signal }) => client.submitAgent(agent.hostname, agent.httpPort, agent.token, signal)),
      ping: fromPromise<void>(({ signal }) => client.ping(signal)),
    },
  });
  return createActor(logic, { input: options });
}

type RegistrationActor = Actor<typeof registrationMachine>;

function iso(ms: number | undefined): string | null {
  return ms === undefined ? null : new Date(ms).toISOString();
}

function stateName(snapshot: SnapshotFrom<typeof registrationMachine>): string {
  const value = snapshot.value;
  if (typeof value === 'string') return value;
  return Object.entries(value)
    .map(([parent, child]) => `${parent}.${String(child)}`)
    .join(',');
}

export class Registration implements ContactStatus {
  private readonly client: OrchestratorClient;
  private readonly options: RegistrationOptions;
  private readonly baseUrl: string;
  private actor?: RegistrationActor;
  private starting?: Promise<void>;
  private stopped = false;
  private agent?: { hostname: string; httpPort: number };

  /** Reads the TLS files now, so a bad SSL* key stops the agent at start rather than at the first call. */
  constructor(
    config: Config,
    private readonly token: string,
    options: Partial<RegistrationOptions> = {},
  ) {
    const clientOptions = orchestratorClientOptions(config);
    this.baseUrl = clientOptions.baseUrl;
    this.client = new OrchestratorClient(clientOptions);
    this.options = { ...registrationOptionsFromConfig(config), ...options };
  }

  /** Starts submitting (once xstate and the machine have loaded); httpPort is the port actually listened on (HTTPPort 0 picks one). */
  start(agent: { hostname: string; httpPort: number }): void {
    if (this.starting) return;
    this.agent = agent;
    this.starting = startRegistrationActor(this.client, { ...agent, token: this.token }, this.options).then(
      (actor) => this.run(actor, agent),
      (err: unknown) => log.error(`registration cannot start: ${(err as Error).message}`),
    );
  }

  private run(actor: RegistrationActor, agent: { hostname: string; httpPort: number }): void {
    if (this.stopped) return;
    let previous = '';
    actor.subscribe({
      next: (snapshot) => {
        const state = stateName(snapshot);
        const top = state.split('.')[0];
        if (top === previous) return;
        const ctx = snapshot.context;
        if (top === 'registered') log.info('registered with orchestrator', { orchestrator: this.baseUrl, ...agent });
        else if (top === 'backoff') {
          log.warn(`cannot reach orchestrator: ${ctx.lastError}`, { failures: ctx.failures, retryAt: iso(ctx.nextRetryAt) });
        } else log.debug(`registration: ${state}`);
        previous = top;
      },
      error: (err) => log.error(`registration stopped on an unexpected error: ${(err as Error).message}`),
    });
    this.actor = actor;
    actor.start();
  }

  /** Stops the machine (or keeps it from starting); an in-flight call is aborted through its signal. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.starting;
    const actor = this.actor;
    if (!actor) return;
    actor.send({ type: 'STOP' });
    actor.stop();
  }

  lastContactAt(): number | undefined {
    return this.actor?.getSnapshot().context.lastContactAt;
  }

  status(): RegistrationStatus {
    const base = {
      orchestrator: this.baseUrl,
      hostname: this.agent?.hostname ?? null,
      httpPort: this.agent?.httpPort ?? null,
    };
    if (!this.actor) {
      return {
        state: 'not started',
        registered: false,
        ...base,
        lastContactAt: null,
        lastSubmittedAt: null,
        lastError: null,
        lastFailureAt: null,
        failures: 0,
        nextAttemptAt: null,
        nextPingAt: null,
        nextResubmitAt: null,
        nextRetryAt: null,
      };
    }
    const snapshot = this.actor.getSnapshot();
    const ctx = snapshot.context;
    const state = stateName(snapshot);
    const upcoming = [ctx.nextRetryAt, ctx.nextPingAt, ctx.nextResubmitAt].filter((t): t is number => t !== undefined);
    return {
      state,
      registered: state.startsWith('registered'),
      ...base,
      lastContactAt: iso(ctx.lastContactAt),
      lastSubmittedAt: iso(ctx.lastSubmittedAt),
      lastError: ctx.lastError ?? null,
      lastFailureAt: iso(ctx.lastFailureAt),
      failures: ctx.failures,
      nextAttemptAt: state === 'submitting' || state === 'registered.pinging' ? iso(Date.now()) : iso(upcoming.length ? Math.min(...upcoming) : undefined),
      nextPingAt: iso(ctx.nextPingAt),
      nextResubmitAt: iso(ctx.nextResubmitAt),
      nextRetryAt: iso(ctx.nextRetryAt),
    };
  }
}
