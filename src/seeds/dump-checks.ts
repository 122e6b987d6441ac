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

/** What loading a dump surely runs in each schema it replaces: DROP/CREATE DATABASE, CREATE TABLE, LOCK TABLES, INSERT, ALTER TABLE ... KEYS. */
export const LOAD_PRIVILEGES = ['CREATE', 'DROP', 'INSERT', 'ALTER', 'LOCK TABLES'] as const;

/** A schema-level grant's name (`app\_%`) as a test of a schema name: LIKE's % and _, their \-escapes literal. */
function schemaPattern(quoted: string): (schema: string) => boolean {
  const name = quoted.replace(/^`|`$/g, '').replace(/``/g, '`');
  let re = '';
  for (let i = 0; i < name.length; i++) {
    const c = name[i]!;
    if (c === '\\' && i + 1 < name.length) re += name[++i]!.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    else if (c === '%') re += '.*';
    else if (c === '_') re += '.';
    else re += c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  }
  const rx = new RegExp(`^${re}$`, 'i');
  return (schema) => rx.test(schema);
}

/**
 * The privileges of LOAD_PRIVILEGES the account lacks on each schema, from its SHOW GRANTS lines (global `*.*` and
 * schema-level grants); null when that cannot be told from the lines (a role or proxy grant), so the check passes.
 */
export function missingLoadPrivileges(grantLines: readonly string[], schemas: readonly string[]): Map<string, string[]> | null {
  const grants: { applies: (schema: string) => boolean; privileges: Set<string> }[] = [];
  for (const line of grantLines) {
    const m = /^GRANT (.+?) ON (\*\.\*|`(?:[^`]|``)+`\.\*|\S+) TO /i.exec(line.trim());
    if (!m) {
      if (/^GRANT /i.test(line.trim())) return null; // a role granted to the account: its privileges are not on these lines
      continue;
    }
    if (/^PROXY$/i.test(m[1]!)) return null;
    const privileges = new Set(m[1]!.split(',').map((p) => p.trim().toUpperCase()));
    if (privileges.has('ALL PRIVILEGES') || privileges.has('ALL')) for (const p of LOAD_PRIVILEGES) privileges.add(p);
    const scope = m[2]!;
    if (scope === '*.*') grants.push({ applies: () => true, privileges });
    else if (scope.endsWith('.*') && scope.startsWith('`')) grants.push({ applies: schemaPattern(scope.slice(0, -2)), privileges });
    // Table-level grants do not let it drop or create the schema.
  }
  const missing = new Map<string, string[]>();
  for (const schema of schemas) {
    const lacking = LOAD_PRIVILEGES.filter((p) => !grants.some((g) => g.applies(schema) && g.privileges.has(p)));
    if (lacking.length > 0) missing.set(schema, lacking);
  }
  return missing;
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
  if (schemas.length > 0 && system.length === 0) {
    checks.push(
      await attempt('loadPrivileges', async () => {
        const rows = await i.client.query('SHOW GRANTS', opts);
        const header = rows[0] ? Object.keys(rows[0])[0] ?? '' : '';
        const account = header.replace(/^Grants for /i, '') || 'the SeedCredentialsFile account';
        const missing = missingLoadPrivileges(rows.map((r) => Object.values(r)[0] ?? ''), schemas);
        if (missing === null) return { name: 'loadPrivileges', ok: true, message: `${account} gets privileges through a role or proxy: not checked before the load` };
        if (missing.size === 0) return { name: 'loadPrivileges', ok: true, message: `${account} may drop, create and load the schemas the dump replaces` };
        const lacking = [...new Set([...missing.values()].flat())];
        return {
          name: 'loadPrivileges',
          ok: false,
          message:
            `the SeedCredentialsFile account ${account} lacks ${lacking.join(', ')} on ${[...missing.keys()].join(', ')} here, which loading the dump needs: ` +
            `grant it the target's privileges (README: seeds by logical dump, minimal grants); after a backup seed this MySQL has the source's accounts, so give them to the source's agent account too`,
        };
      }),
    );
  }
  for (const name of ['sourceBinaryLog', 'replicationAccount', 'seedAccount']) {
    const c = keep(name);
    if (c) checks.push(c);
  }
  return checks;
}
