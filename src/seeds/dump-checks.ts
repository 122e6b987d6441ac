// The pre-seed checks of a seed by logical dump, on the target: the backup method's inspector (pre-seed-checks.ts)
// minus what a dump does not need (the same major version: moving between versions is what a dump is for),
// with this MySQL required to run (the dump is loaded into it), free space counted against the schemas the dump
// replaces (not the whole datadir), and a line naming exactly what will be replaced. It only reads.
import type { MySQLClient } from '../host/mysql-client.js';
import { inspectBackupTarget, type SeedCheck, type TargetInspection } from './pre-seed-checks.js';

/** Never dumped, never dropped: the server's own schemas. */
export const SYSTEM_SCHEMAS = ['mysql', 'sys', 'information_schema', 'performance_schema'] as const;

export function isSystemSchema(name: string): boolean {
  return (SYSTEM_SCHEMAS as readonly string[]).includes(name.toLowerCase()) || name.startsWith('#mysql50#');
}

/** A schema name as an SQL identifier. */
export function sqlIdentifier(name: string): string {
  return '`' + name.replace(/`/g, '``') + '`';
}

/** The user schemas of a server (what a dump brings), sorted. */
export async function userSchemas(client: MySQLClient, opts: { signal: AbortSignal; timeoutMs: number }): Promise<string[]> {
  const rows = await client.query('SELECT SCHEMA_NAME AS name FROM information_schema.SCHEMATA ORDER BY SCHEMA_NAME', opts);
  return rows.map((r) => r.name ?? '').filter((n) => n !== '' && !isSystemSchema(n));
}

/** Bytes of table data and indexes in these schemas (information_schema's estimate). */
export async function schemaBytes(client: MySQLClient, schemas: readonly string[], opts: { signal: AbortSignal; timeoutMs: number }): Promise<number> {
  if (schemas.length === 0) return 0;
  const list = schemas.map((s) => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`).join(', ');
  const v = await client.value(`SELECT COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) FROM information_schema.TABLES WHERE TABLE_SCHEMA IN (${list})`, opts);
  return Number(v ?? 0);
}

const GiB = 1024 ** 3;
const size = (n: number) => (n >= GiB ? `${(n / GiB).toFixed(1)} GiB` : `${(n / 1024 ** 2).toFixed(0)} MiB`);
/** Room beyond the source's data: the source grows during the dump, and a fresh load is not always smaller. */
const MARGIN = 0.1;

async function attempt(name: string, fn: () => Promise<SeedCheck>): Promise<SeedCheck> {
  try {
    return await fn();
  } catch (err) {
    return { name, ok: false, message: (err as Error).message };
  }
}

/** Every check of a dump seed's target, in the order shown; none changes anything. */
export async function inspectDumpTarget(i: TargetInspection): Promise<SeedCheck[]> {
  const opts = { signal: i.signal, timeoutMs: 30_000 };
  const schemas = i.source.schemas ?? [];
  if (!(await i.mysql.isRunning(i.signal))) {
    return [
      i.source.mysqlRunning
        ? { name: 'sourceMySQLRunning', ok: true, message: `the source's MySQL ${i.source.version} runs` }
        : { name: 'sourceMySQLRunning', ok: false, message: "the source's MySQL is not running: a dump needs it up; start it on the source and seed again" },
      { name: 'targetMySQLRunning', ok: false, message: 'this MySQL is not running: a dump is loaded into a running server (startMySQL does not apply to method "dump"); start it and create a new seed' },
    ];
  }
  const shared = await inspectBackupTarget(i);
  const keep = (name: string) => shared.find((c) => c.name === name);
  const checks: SeedCheck[] = [];
  const source = keep('sourceMySQLRunning');
  if (source) checks.push(source.ok ? source : { ...source, message: "the source's MySQL is not running: a dump needs it up; start it on the source and seed again" });
  checks.push(
    await attempt('targetMySQLRunning', async () => ({
      name: 'targetMySQLRunning',
      ok: true,
      message: `this MySQL ${(await i.client.value('SELECT VERSION()', opts)) ?? ''} runs: the dump is loaded into it (any version; a dump needs no same major version)`,
    })),
  );
  checks.push(
    await attempt('freeSpace', async () => {
      const free = await i.datadir.availableSpace(i.datadirPath);
      const replaced = await schemaBytes(i.client, schemas, opts);
      const need = Math.ceil(i.source.dataBytes * (1 + MARGIN));
      const have = free + replaced;
      return {
        name: 'freeSpace',
        ok: have >= need,
        message:
          have >= need
            ? `${size(have)} available for ${i.datadirPath} (free plus the schemas the dump replaces), ${size(need)} needed`
            : `${i.datadirPath} has ${size(free)} free plus ${size(replaced)} in the schemas the dump replaces, the source's schemas need ${size(need)} (${size(i.source.dataBytes)} + ${MARGIN * 100}%): free space or choose another target`,
      };
    }),
  );
  for (const name of ['noReplicasAttached', 'noClientConnections']) {
    const c = keep(name);
    if (c) checks.push(c);
  }
  const system = schemas.filter(isSystemSchema);
  checks.push(
    system.length > 0
      ? { name: 'schemasReplaced', ok: false, message: `the source offers system schemas (${system.join(', ')}), which a dump seed never replaces: run the same agent version on both hosts` }
      : schemas.length === 0
        ? { name: 'schemasReplaced', ok: false, message: 'the source has no user schemas (only mysql, sys, information_schema, performance_schema): there is nothing to dump' }
        : {
            name: 'schemasReplaced',
            ok: true,
            message: `the dump replaces these schemas here (dropped, then loaded): ${schemas.join(', ')}; the other schemas, users and grants (mysql) stay`,
          },
  );
  for (const name of ['sourceBinaryLog', 'replicationAccount', 'seedAccount']) {
    const c = keep(name);
    if (c) checks.push(c);
  }
  return checks;
}
