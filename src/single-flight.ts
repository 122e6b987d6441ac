// Single flight for read-only answers that cost a process: callers that arrive while a run is in flight
// share it; the first caller after it ended starts a new one. Nothing is kept once a run has ended, so an
// answer never outlives the moment it was read (no cache, no TTL). For reads only: a destructive step reads
// the state itself (MySQLService directly), so it always sees a run started after it asked.
import type { MySQLService } from './host/interfaces.js';

/** fn, with concurrent calls sharing one run. */
export function singleFlight<T>(fn: () => Promise<T>): () => Promise<T> {
  let running: Promise<T> | undefined;
  return () => {
    if (running) return running;
    const run = fn().finally(() => {
      if (running === run) running = undefined;
    });
    running = run;
    return run;
  };
}

/** fn per key, with concurrent calls for the same key sharing one run. */
export function keyedSingleFlight<K, T>(fn: (key: K) => Promise<T>): (key: K) => Promise<T> {
  const running = new Map<K, Promise<T>>();
  return (key) => {
    const current = running.get(key);
    if (current) return current;
    const run = fn(key).finally(() => {
      if (running.get(key) === run) running.delete(key);
    });
    running.set(key, run);
    return run;
  };
}

/**
 * The MySQL reads (port, status, datadir) for routes that only report them: 100 callers of mysql-port wait
 * on one MySQLPortCommand. Stop and start pass through. The shared run gets no caller's abort signal: one
 * caller leaving must not cancel the answer the others wait for (CommandTimeoutSeconds still bounds it).
 */
export function sharedReads(mysql: MySQLService): MySQLService {
  const port = singleFlight(() => mysql.port());
  const isRunning = singleFlight(() => mysql.isRunning());
  const datadir = singleFlight(() => mysql.datadir());
  return {
    port: () => port(),
    isRunning: () => isRunning(),
    datadir: () => datadir(),
    stop: (signal) => mysql.stop(signal),
    start: (signal) => mysql.start(signal),
  };
}
