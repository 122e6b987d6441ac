// Configuration: the original agent's keys, defaults and file search order, plus our own extension keys.
// As the original (Go's encoding/json), an unknown key is ignored and a key differing only in case is
// read; unlike it, each such key gets a loud warning naming the file and the closest known key. An
// ill-typed value stays an error naming the key and the file.
import { existsSync, readFileSync } from 'node:fs';
import { AgentError } from './errors.js';
import { log } from './log.js';
import { MAX_DURATION_SECONDS } from './timers.js';

type KeyType = 'string' | 'uint' | 'int' | 'bool' | 'string[]' | 'map' | 'number';

/** The keys of github/orchestrator-agent go/config/config.go, with its defaults. */
const compatibleKeys = {
  SnapshotMountPoint: ['string', ''],
  ContinuousPollSeconds: ['uint', 60],
  ResubmitAgentIntervalMinutes: ['uint', 60],
  LogicalVolumesCommand: ['string', 'lvs --noheading -o lv_name,vg_name,lv_path,snap_percent'],
  GetMountCommand: ['string', 'grep %s /etc/mtab'],
  UnmountCommand: ['string', 'umount %s'],
  MountLVCommand: ['string', 'mount %s %s %s'],
  RemoveLVCommand: ['string', 'lvremove --force %s'],
  MySQLTailErrorLogCommand: ['string', 'tail -n 20 $(egrep "log[-_]error" /etc/my.cnf | cut -d "=" -f 2)'],
  GetLogicalVolumeFSTypeCommand: ['string', 'blkid %s'],
  CreateSnapshotCommand: ['string', ''],
  AvailableLocalSnapshotHostsCommand: ['string', ''],
  AvailableSnapshotHostsCommand: ['string', ''],
  SnapshotVolumesFilter: ['string', ''],
  MySQLDatadirCommand: ['string', ''],
  MySQLPortCommand: ['string', ''],
  MySQLDeleteDatadirContentCommand: ['string', ''],
  MySQLServiceStopCommand: ['string', ''],
  MySQLServiceStartCommand: ['string', ''],
  MySQLServiceStatusCommand: ['string', ''],
  ReceiveSeedDataCommand: ['string', ''],
  SendSeedDataCommand: ['string', ''],
  PostCopyCommand: ['string', ''],
  MySQLClientCommand: ['string', 'mysql'],
  AgentsServer: ['string', ''],
  AgentsServerPort: ['string', ''],
  HTTPPort: ['uint', 3002],
  SeedTransferPort: ['uint', 21234],
  HTTPAuthUser: ['string', ''],
  HTTPAuthPassword: ['string', ''],
  UseSSL: ['bool', false],
  UseMutualTLS: ['bool', false],
  SSLSkipVerify: ['bool', false],
  SSLPrivateKeyFile: ['string', ''],
  SSLCertFile: ['string', ''],
  SSLCAFile: ['string', ''],
  SSLValidOUs: ['string[]', []],
  StatusEndpoint: ['string', '/api/status'],
  StatusOUVerify: ['bool', false],
  StatusBadSeconds: ['uint', 300],
  HttpTimeoutSeconds: ['int', 10],
  ExecWithSudo: ['bool', false],
  CustomCommands: ['map', {}],
  TokenHintFile: ['string', ''],
  TokenHttpHeader: ['string', ''],
} as const satisfies Record<string, readonly [KeyType, unknown]>;

/** Keys this agent adds. None changes what an original key means. */
const extensionKeys = {
  /** Where seed state is persisted (one JSON file per seed). */
  StateDir: ['string', '/var/lib/orchestrator-agent'],
  /** Address the API listens on; empty means every interface, as the original. */
  HTTPBindAddress: ['string', ''],
  /** Upper bound for any configured command (stop/start MySQL, post-copy, custom commands). */
  CommandTimeoutSeconds: ['uint', 600],
  /** 'lvm' (the original's snapshots) or 'btrfs' (read-only subvolume snapshots). */
  SnapshotBackend: ['string', 'lvm'],
  /** btrfs backend: the directory whose subvolumes are the snapshots. */
  BtrfsSnapshotsDir: ['string', ''],
  /** btrfs backend: the subvolume /api/create-snapshot snapshots when CreateSnapshotCommand is empty. */
  BtrfsSnapshotSource: ['string', ''],
  /** MySQL error log path; when empty, log-error is read from /etc/my.cnf as the original did. */
  MySQLErrorLogFile: ['string', ''],
  /** Extra directories /api/du may measure, besides the datadir and SnapshotMountPoint. */
  DiskUsageAllowedPaths: ['string[]', []],
  /** Built-in transfer: bandwidth limit in MB/s (0 = unlimited). */
  SeedTransferBandwidthMBps: ['number', 0],
  /**
   * Built-in transfer: compression of file data on the wire, chosen by the sending agent: "off", "fast" (lz4),
   * "strong" (brotli) or "auto" (lz4 while the link is slower than the disk). A seed's "compression" overrides it.
   */
  SeedTransferCompression: ['string', 'off'],
  /** Built-in transfer: TLS on the data channel, with the API's certificates. */
  SeedTransferUseSSL: ['bool', false],
  /** Built-in transfer: address the receiver listens on. */
  SeedTransferBindAddress: ['string', '0.0.0.0'],
  /** Seconds a receiver waits for its sender before the seed fails. */
  SeedTransferConnectTimeoutSeconds: ['uint', 600],
  /** Seconds either side of a built-in transfer waits for its peer to come back after a lost session. */
  SeedTransferReconnectTimeoutSeconds: ['uint', 1800],
  /** Original seed routes with the built-in transfer: the transfer key is HMAC-SHA256(secret, seedId). */
  SeedTransferSecret: ['string', ''],
  /** Agent-to-agent calls (one request seeding both halves): HMAC-SHA256 key shared by the fleet's agents. */
  AgentFleetSecret: ['string', ''],
  /** Seeds by backup/dump: option file ([client] user, password, socket or host/port) of the account the agent uses on its own MySQL. */
  SeedCredentialsFile: ['string', ''],
  /** Seeds with replicate: option file ([client] user, password) of the account the new replica connects to its source with. */
  ReplicationCredentialsFile: ['string', ''],
  /** Seeds by backup: the hot-backup program (mariabackup; xtrabackup for MySQL/Percona). */
  SeedBackupProgram: ['string', 'mariabackup'],
  /** Seeds by backup: the program that extracts the backup stream on the target (mbstream; xbstream). */
  SeedBackupExtractProgram: ['string', 'mbstream'],
  /** "debug", "info", "warn" or "error"; empty keeps the command line's level (--debug, else info). Live on SIGHUP. */
  LogLevel: ['string', ''],
  /** Serve StatusEndpoint without basic auth (for a load balancer's health check); the original asked for it. */
  StatusEndpointWithoutBasicAuth: ['bool', false],
} as const satisfies Record<string, readonly [KeyType, unknown]>;

const allKeys: Record<string, readonly [KeyType, unknown]> = { ...compatibleKeys, ...extensionKeys };

type TypeOf<T extends KeyType> = T extends 'string'
  ? string
  : T extends 'uint' | 'int' | 'number'
    ? number
    : T extends 'bool'
      ? boolean
      : T extends 'string[]'
        ? string[]
        : Record<string, string>;

type KeysOf<T extends Record<string, readonly [KeyType, unknown]>> = { [K in keyof T]: TypeOf<T[K][0]> };
export type Config = KeysOf<typeof compatibleKeys> & KeysOf<typeof extensionKeys>;

/** The original's search order when no --config is given; later files override earlier ones. */
export const defaultConfigFiles = [
  '/etc/orchestrator-agent.conf.json',
  'conf/orchestrator-agent.conf.json',
  'orchestrator-agent.conf.json',
];

export function defaultConfig(): Config {
  const config: Record<string, unknown> = {};
  for (const [key, [, value]] of Object.entries(allKeys)) config[key] = structuredClone(value);
  return config as Config;
}

function checkValue(key: string, type: KeyType, value: unknown): string | undefined {
  switch (type) {
    case 'string':
      return typeof value === 'string' ? undefined : 'a string';
    case 'bool':
      return typeof value === 'boolean' ? undefined : 'true or false';
    case 'uint':
      return Number.isInteger(value) && (value as number) >= 0 ? undefined : 'a non-negative integer';
    case 'int':
      return Number.isInteger(value) ? undefined : 'an integer';
    case 'number':
      return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? undefined : 'a non-negative number';
    case 'string[]':
      return Array.isArray(value) && value.every((v) => typeof v === 'string') ? undefined : 'an array of strings';
    case 'map':
      return value !== null &&
        typeof value === 'object' &&
        !Array.isArray(value) &&
        Object.values(value).every((v) => typeof v === 'string')
        ? undefined
        : 'an object of strings';
  }
}

/** Edit distance (insert, delete, substitute one character), for "did you mean". */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length]!;
}

/** The known key an unknown one most likely meant, when one is close enough to be a typo. */
export function closestKey(key: string): string | undefined {
  const lower = key.toLowerCase();
  let best: { key: string; distance: number } | undefined;
  for (const known of Object.keys(allKeys)) {
    const distance = editDistance(lower, known.toLowerCase());
    if (!best || distance < best.distance) best = { key: known, distance };
  }
  return best && best.distance <= Math.max(2, Math.floor(key.length / 4)) ? best.key : undefined;
}

/** The known key equal to `key` but for case: Go's encoding/json, which read the original's files, took it. */
function sameKeyOtherCase(key: string): string | undefined {
  const lower = key.toLowerCase();
  return Object.keys(allKeys).find((k) => k.toLowerCase() === lower);
}

/**
 * Merges one JSON file into config; every key is checked against its declared type. Returns a warning
 * for each key that is not spelled as a known key (ignored, or read under its known spelling).
 */
export function mergeConfigFile(config: Config, file: string): string[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new AgentError('config', `cannot read config file ${file}: ${(err as Error).message}`, {
      hint: 'fix the JSON syntax or point --config at another file',
    });
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new AgentError('config', `config file ${file} must hold a JSON object`);
  }
  const target = config as unknown as Record<string, unknown>;
  const warnings: string[] = [];
  for (const [written, value] of Object.entries(parsed)) {
    let key = written;
    if (!Object.hasOwn(allKeys, written)) {
      const other = sameKeyOtherCase(written);
      if (!other) {
        const near = closestKey(written);
        warnings.push(
          `unknown key "${written}" in config file ${file} is ignored (the original ignored it too): ` +
            (near ? `did you mean "${near}"?` : 'remove it; README "Configuration" lists the keys'),
        );
        continue;
      }
      warnings.push(`key "${written}" in config file ${file} is read as "${other}" (as the original did): spell it "${other}"`);
      key = other;
    }
    const spec = allKeys[key]!;
    const expected = checkValue(key, spec[0], value);
    if (expected) {
      throw new AgentError('config', `key "${written}" in config file ${file} must be ${expected}, got ${JSON.stringify(value)}`);
    }
    target[key] = value;
  }
  return warnings;
}

export interface LoadedConfig {
  config: Config;
  files: string[];
  /** Keys not spelled as known keys (each also logged at WARN). */
  warnings: string[];
}

/**
 * With an explicit file, that file must exist (the original's ForceRead). Without one, the original's
 * three paths are read in order, each overriding the previous, and missing ones skipped.
 */
export function loadConfig(explicitFile?: string, searchPaths: string[] = defaultConfigFiles): LoadedConfig {
  const config = defaultConfig();
  const files: string[] = [];
  const warnings: string[] = [];
  if (explicitFile) {
    if (!existsSync(explicitFile)) {
      throw new AgentError('config', `config file ${explicitFile} does not exist`, { hint: 'check the --config path' });
    }
    warnings.push(...mergeConfigFile(config, explicitFile));
    files.push(explicitFile);
  } else {
    for (const file of searchPaths) {
      if (existsSync(file)) {
        warnings.push(...mergeConfigFile(config, file));
        files.push(file);
      }
    }
  }
  // Before the cross-key checks: a misspelt key often explains why one of them fails.
  for (const warning of warnings) log.warn(warning);
  validateConfig(config, files);
  return { config, files, warnings };
}

/**
 * This agent's own duration keys, with their allowed range. The original's keys (ContinuousPollSeconds,
 * ResubmitAgentIntervalMinutes, HttpTimeoutSeconds, StatusBadSeconds) accept what the original accepted;
 * their timers hold for any length instead (src/timers.ts, machines/registration.ts).
 */
const durationRanges: ReadonlyArray<readonly [DurationKey, number, number]> = [
  ['CommandTimeoutSeconds', 1, MAX_DURATION_SECONDS],
  ['SeedTransferConnectTimeoutSeconds', 1, MAX_DURATION_SECONDS],
  ['SeedTransferReconnectTimeoutSeconds', 1, MAX_DURATION_SECONDS],
];
type DurationKey = 'CommandTimeoutSeconds' | 'SeedTransferConnectTimeoutSeconds' | 'SeedTransferReconnectTimeoutSeconds';

/** Cross-key checks, done once at start so a bad combination fails before anything runs. */
export function validateConfig(config: Config, files: string[]): void {
  const where =
    files.length > 0
      ? files.join(', ')
      : `the built-in defaults: no configuration file found at ${defaultConfigFiles.join(', ')} (the last two relative to ${process.cwd()}), and no --config FILE`;
  if (config.AgentsServer === '') {
    throw new AgentError('config', `AgentsServer is not set (read: ${where})`, {
      hint: 'set it to the HTTP address orchestrator serves agents on, e.g. "http://orchestrator.example.com" with AgentsServerPort ":3001"',
    });
  }
  if (config.UseSSL && (config.SSLCertFile === '' || config.SSLPrivateKeyFile === '')) {
    throw new AgentError('config', `UseSSL is true but SSLCertFile or SSLPrivateKeyFile is empty (read: ${where})`);
  }
  if (config.UseMutualTLS && config.SSLCAFile === '') {
    throw new AgentError('config', `UseMutualTLS is true but SSLCAFile is empty (read: ${where})`);
  }
  if (!['lvm', 'btrfs'].includes(config.SnapshotBackend)) {
    throw new AgentError('config', `SnapshotBackend must be "lvm" or "btrfs", got "${config.SnapshotBackend}" (read: ${where})`);
  }
  if (config.SnapshotBackend === 'btrfs' && config.BtrfsSnapshotsDir === '') {
    throw new AgentError('config', `SnapshotBackend is "btrfs" but BtrfsSnapshotsDir is empty (read: ${where})`);
  }
  if (!config.StatusEndpoint.startsWith('/')) {
    throw new AgentError('config', `StatusEndpoint must start with "/", got "${config.StatusEndpoint}" (read: ${where})`);
  }
  for (const [key, min, max] of durationRanges) {
    const value = config[key];
    if (value < min || value > max) {
      throw new AgentError('config', `${key} must be from ${min} to ${max}, got ${value} (read: ${where})`, {
        hint: `timers in the agent hold at most ${MAX_DURATION_SECONDS} s (30 days)`,
      });
    }
  }
  if (!['off', 'fast', 'strong', 'auto'].includes(config.SeedTransferCompression)) {
    throw new AgentError('config', `SeedTransferCompression must be "off", "fast", "strong" or "auto", got "${config.SeedTransferCompression}" (read: ${where})`);
  }
  if (config.LogLevel !== '' && !['debug', 'info', 'warn', 'error'].includes(config.LogLevel)) {
    throw new AgentError('config', `LogLevel must be "debug", "info", "warn", "error" or "", got "${config.LogLevel}" (read: ${where})`);
  }
  if (config.HTTPPort > 65535) {
    throw new AgentError('config', `HTTPPort ${config.HTTPPort} is not a TCP port (read: ${where})`);
  }
}

export function configKeys(): string[] {
  return Object.keys(allKeys);
}
