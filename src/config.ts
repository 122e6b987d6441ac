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
   * Built-in transfer and backup/dump streams: compression on the wire, chosen by the sending agent: "off", "fast" (zstd 1),
   * "strong" (zstd 3) or "auto" (fast while the link is slower than the disk). A seed's "compression" overrides it.
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
  /** Seeds by backup, source: arguments added after the agent's own to `SeedBackupProgram --backup` (argv, no shell). */
  SeedBackupFlags: ['string[]', []],
  /** Seeds by backup, target: arguments added after the agent's own to `SeedBackupProgram --prepare` (argv, no shell). */
  SeedBackupPrepareFlags: ['string[]', []],
  /** Seeds with replicate: done once the replica applied up to the copy's end, or lags at most this many seconds (0: the position only). */
  SeedReplicationMaxLagSeconds: ['uint', 0],
  /** Seeds by dump: the logical dump program on the source (mariadb-dump; mysqldump), streamed to the target. */
  SeedDumpProgram: ['string', 'mariadb-dump'],
  /** Seeds by dump: the client that loads the dump stream into the target's running MySQL (mariadb; mysql). */
  SeedLoadProgram: ['string', 'mariadb'],
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

/** One thing wrong with the configuration, and what to do about it when we know. */
export interface ConfigProblem {
  message: string;
  hint?: string;
}

/** All problems found, in one error: the operator fixes every bad key in one round. */
export function configError(problems: ConfigProblem[]): AgentError {
  if (problems.length === 1) return new AgentError('config', problems[0]!.message, { hint: problems[0]!.hint });
  const hints = [...new Set(problems.flatMap((p) => (p.hint ? [p.hint] : [])))];
  return new AgentError('config', `${problems.length} problems in the configuration: ${problems.map((p, i) => `(${i + 1}) ${p.message}`).join('; ')}`, {
    hint: hints.length > 0 ? hints.join('; ') : undefined,
  });
}

/**
 * Merges one JSON file into config; every key is checked against its declared type. Returns a warning
 * for each key that is not spelled as a known key (ignored, or read under its known spelling). A key of
 * the wrong type is left out and added to `problems`; without that list, all of them are thrown as one error.
 */
export function mergeConfigFile(config: Config, file: string, problems?: ConfigProblem[]): string[] {
  const bad: ConfigProblem[] = problems ?? [];
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
      bad.push({ message: `key "${written}" in config file ${file} must be ${expected}, got ${JSON.stringify(value)}` });
      continue;
    }
    target[key] = value;
  }
  if (!problems && bad.length > 0) throw configError(bad);
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
  const problems: ConfigProblem[] = [];
  if (explicitFile) {
    if (!existsSync(explicitFile)) {
      throw new AgentError('config', `config file ${explicitFile} does not exist`, { hint: 'check the --config path' });
    }
    warnings.push(...mergeConfigFile(config, explicitFile, problems));
    files.push(explicitFile);
  } else {
    for (const file of searchPaths) {
      if (existsSync(file)) {
        warnings.push(...mergeConfigFile(config, file, problems));
        files.push(file);
      }
    }
  }
  // Before the cross-key checks: a misspelt key often explains why one of them fails.
  for (const warning of warnings) log.warn(warning);
  // Every bad key and every failed cross-key check, in one error.
  problems.push(...configProblems(config, files));
  if (problems.length > 0) throw configError(problems);
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

/**
 * Options of the backup program that the agent sets itself (the runbook depends on them) or that would put a
 * secret on the command line: SeedBackupFlags / SeedBackupPrepareFlags may not carry them.
 */
const agentOwnedBackupOptions = ['--backup', '--prepare', '--stream', '--target-dir', '--datadir', '--defaults-file', '--defaults-extra-file', '--no-defaults', '--defaults-group-suffix', '--password', '--copy-back', '--move-back'];
const backupFlagsHint = 'list each argument of the backup program as its own string, with its value joined by "=", e.g. ["--parallel=4", "--use-memory=1G"]; credentials belong in SeedCredentialsFile';

/** Why one extra argument of the backup program is refused, or undefined. */
function backupFlagProblem(flag: string): string | undefined {
  if (!/^--?[A-Za-z0-9]/.test(flag)) return `holds ${JSON.stringify(flag)}: each entry must be one option starting with "-", its value joined by "=" (an argv entry, never run through a shell)`;
  if (/[\0\n\r]/.test(flag)) return `holds ${JSON.stringify(flag)}: an option may not contain a line break or NUL`;
  const name = flag.split('=')[0]!.replace(/_/g, '-');
  if (/\s/.test(name) || /\s--?[A-Za-z]/.test(flag)) return `holds ${JSON.stringify(flag)}: that is several arguments in one string (no shell splits it)`;
  if (agentOwnedBackupOptions.includes(name)) return `holds ${JSON.stringify(flag)}: the agent sets ${name} itself (or it would show a secret in the process list)`;
  if (/^-p/.test(flag)) return `holds ${JSON.stringify(flag)}: a password on the command line shows in the process list`;
  return undefined;
}

/** Cross-key checks, done once at start so a bad combination fails before anything runs: every failure, in one error. */
export function validateConfig(config: Config, files: string[]): void {
  const problems = configProblems(config, files);
  if (problems.length > 0) throw configError(problems);
}

/** What the cross-key checks find wrong (empty when all is well). */
export function configProblems(config: Config, files: string[]): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const where =
    files.length > 0
      ? files.join(', ')
      : `the built-in defaults: no configuration file found at ${defaultConfigFiles.join(', ')} (the last two relative to ${process.cwd()}), and no --config FILE`;
  if (config.AgentsServer === '') {
    problems.push({
      message: `AgentsServer is not set (read: ${where})`,
      hint: 'set it to the HTTP address orchestrator serves agents on, e.g. "http://orchestrator.example.com" with AgentsServerPort ":3001"',
    });
  }
  if (config.UseSSL && (config.SSLCertFile === '' || config.SSLPrivateKeyFile === '')) {
    problems.push({ message: `UseSSL is true but SSLCertFile or SSLPrivateKeyFile is empty (read: ${where})` });
  }
  if (config.UseMutualTLS && config.SSLCAFile === '') {
    problems.push({ message: `UseMutualTLS is true but SSLCAFile is empty (read: ${where})` });
  }
  if (!['lvm', 'btrfs'].includes(config.SnapshotBackend)) {
    problems.push({ message: `SnapshotBackend must be "lvm" or "btrfs", got "${config.SnapshotBackend}" (read: ${where})` });
  }
  if (config.SnapshotBackend === 'btrfs' && config.BtrfsSnapshotsDir === '') {
    problems.push({ message: `SnapshotBackend is "btrfs" but BtrfsSnapshotsDir is empty (read: ${where})` });
  }
  if (!config.StatusEndpoint.startsWith('/')) {
    problems.push({ message: `StatusEndpoint must start with "/", got "${config.StatusEndpoint}" (read: ${where})` });
  }
  for (const [key, min, max] of durationRanges) {
    const value = config[key];
    if (value < min || value > max) {
      problems.push({
        message: `${key} must be from ${min} to ${max}, got ${value} (read: ${where})`,
        hint: `timers in the agent hold at most ${MAX_DURATION_SECONDS} s (30 days)`,
      });
    }
  }
  if (!['off', 'fast', 'strong', 'auto'].includes(config.SeedTransferCompression)) {
    throw new AgentError('config', `SeedTransferCompression must be "off", "fast", "strong" or "auto", got "${config.SeedTransferCompression}" (read: ${where})`);
  }
  if (config.LogLevel !== '' && !['debug', 'info', 'warn', 'error'].includes(config.LogLevel)) {
    problems.push({ message: `LogLevel must be "debug", "info", "warn", "error" or "", got "${config.LogLevel}" (read: ${where})` });
  }
  for (const key of ['SeedBackupFlags', 'SeedBackupPrepareFlags'] as const) {
    const problem = config[key].map(backupFlagProblem).find((p) => p !== undefined);
    if (problem) problems.push({ message: `${key} ${problem} (read: ${where})`, hint: backupFlagsHint });
  }
  if (config.HTTPPort > 65535) {
    problems.push({ message: `HTTPPort ${config.HTTPPort} is not a TCP port (read: ${where})` });
  }
  return problems;
}

export function configKeys(): string[] {
  return Object.keys(allKeys);
}
