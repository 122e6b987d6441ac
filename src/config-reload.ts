// SIGHUP: read the configuration again from the same files. Keys read at the moment they are used
// (commands, limits, log level, ...) change in the running agent; keys fixed at start (listener, TLS,
// auth, state directory, registration) keep their running value and the log says they need a restart.
// A file that would not start the agent is refused with the same message as at start, and the running
// configuration stays. Nothing here may end the process.
import { configKeys, type Config, type LoadedConfig } from './config.js';
import { describeError } from './errors.js';
import { getLogLevel, isLogLevel, log, setLogLevel, type LogLevel } from './log.js';

/** Keys the running agent took at start: the HTTP listener and its TLS/auth, StateDir, registration. */
export const restartKeys: ReadonlySet<string> = new Set([
  'HTTPPort',
  'HTTPBindAddress',
  'UseSSL',
  'UseMutualTLS',
  'SSLPrivateKeyFile',
  'SSLCertFile',
  'SSLCAFile',
  'SSLSkipVerify',
  'SSLValidOUs',
  'StatusEndpoint',
  'HTTPAuthUser',
  'HTTPAuthPassword',
  'TokenHttpHeader',
  'TokenHintFile',
  'StateDir',
  'SnapshotBackend',
  'BtrfsSnapshotsDir',
  'AgentsServer',
  'AgentsServerPort',
  'ContinuousPollSeconds',
  'ResubmitAgentIntervalMinutes',
  'HttpTimeoutSeconds',
] satisfies (keyof Config)[]);

export interface ReloadResult {
  /** Changed keys now in effect. */
  applied: string[];
  /** Changed keys that keep their running value until the agent restarts. */
  needRestart: string[];
}

/** Applies the live keys of `next` to `running` in place (every module holds that same object). */
export function applyConfig(running: Config, next: Config): ReloadResult {
  const target = running as unknown as Record<string, unknown>;
  const source = next as unknown as Record<string, unknown>;
  const result: ReloadResult = { applied: [], needRestart: [] };
  for (const key of configKeys()) {
    if (JSON.stringify(target[key]) === JSON.stringify(source[key])) continue;
    if (restartKeys.has(key)) {
      result.needRestart.push(key);
    } else {
      target[key] = structuredClone(source[key]);
      result.applied.push(key);
    }
  }
  return result;
}

/**
 * LogLevel from the config, over the command line's level (--debug), which an empty LogLevel restores.
 * Call once at start, before anything logs; returns the function a reload uses.
 */
export function configLogLevel(config: Config): (config: Config) => void {
  const commandLine: LogLevel = getLogLevel();
  const apply = (c: Config) => setLogLevel(isLogLevel(c.LogLevel) ? c.LogLevel : commandLine);
  apply(config);
  return apply;
}

/** Reads the files again and applies what can change live; never throws. */
export function reloadConfig(running: Config, load: () => LoadedConfig, applyLogLevel: (config: Config) => void): ReloadResult | undefined {
  let loaded: LoadedConfig;
  try {
    loaded = load();
  } catch (err) {
    log.error(`configuration reload refused, the running configuration stays: ${describeError(err)}`);
    return undefined;
  }
  const result = applyConfig(running, loaded.config);
  applyLogLevel(running);
  const files = loaded.files;
  if (result.applied.length === 0 && result.needRestart.length === 0) {
    log.info('configuration reloaded: nothing changed', { files });
  } else {
    // Key names only: values may be passwords or secrets.
    log.info(`configuration reloaded: ${result.applied.length > 0 ? `applied ${result.applied.join(', ')}` : 'nothing applied'}`, { files });
  }
  if (result.needRestart.length > 0) {
    log.warn(`configuration reload: ${result.needRestart.join(', ')} changed; such changes take effect only when the agent restarts; the running values stay until then`, {
      files,
    });
  }
  return result;
}

/** Reload on every SIGHUP (systemd's ExecReload), one at a time: loading is synchronous. */
export function reloadOnSighup(running: Config, load: () => LoadedConfig, applyLogLevel: (config: Config) => void): void {
  process.on('SIGHUP', () => {
    log.info('received SIGHUP, reading the configuration again');
    try {
      reloadConfig(running, load, applyLogLevel);
    } catch (err) {
      log.error(`configuration reload failed, the running configuration stays: ${describeError(err)}`);
    }
  });
}
