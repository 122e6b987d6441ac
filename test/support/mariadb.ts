// A real MariaDB server as plain processes (no service manager here): install a datadir, start/stop
// scripts the agent's configured commands can call, and a SQL helper. See shared real-components §2.2.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from './seed-hosts.js';

export { freePort };

export function which(program: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/usr/bin'])) {
    if (dir && existsSync(join(dir, program))) return join(dir, program);
  }
  return undefined;
}

export const haveMariaDB = ['mariadbd', 'mariadb-install-db', 'mariadb', 'mariadb-admin'].every((p) => which(p) !== undefined);

export interface MariaDBInstance {
  datadir: string;
  socket: string;
  port: number;
  pidFile: string;
  errorLog: string;
  /** Shell commands for the agent's MySQLService*Command keys. */
  commands: { start: string; stop: string; status: string; datadir: string; port: string };
  sql(statement: string): string;
  /** Kill -9 whatever is left (test teardown). */
  kill(): Promise<void>;
}

/** Scripts and helpers for a server on `datadir`; files live in `dir`. Does not start it. */
export async function mariadbInstance(dir: string, datadir: string, name: string, serverArgs: string[] = []): Promise<MariaDBInstance> {
  const port = await freePort();
  const socket = join(dir, `${name}.sock`);
  const pidFile = join(dir, `${name}.pid`);
  const errorLog = join(dir, `${name}.err`);
  const ping = `mariadb-admin --no-defaults -uroot --socket=${socket} ping >/dev/null 2>&1`;
  const startScript = join(dir, `${name}-start.sh`);
  const stopScript = join(dir, `${name}-stop.sh`);
  writeFileSync(
    startScript,
    [
      'set -e',
      `${ping} && exit 0`,
      `setsid ${which('mariadbd')} --no-defaults --user=root --datadir=${datadir} --bind-address=127.0.0.1 --port=${port} \\`,
      `  --socket=${socket} --pid-file=${pidFile} --log-error=${errorLog} --skip-name-resolve \\`,
      `  --innodb-buffer-pool-size=16M ${serverArgs.join(' ')} </dev/null >/dev/null 2>&1 &`,
      `for i in $(seq 1 600); do ${ping} && exit 0; sleep 0.1; done`,
      `echo "mariadbd on ${datadir} did not answer ping within 60s; see ${errorLog}" >&2; exit 1`,
    ].join('\n'),
  );
  writeFileSync(
    stopScript,
    [
      `[ -f ${pidFile} ] || exit 0`,
      `pid=$(cat ${pidFile})`,
      'kill -TERM "$pid" 2>/dev/null || exit 0',
      'for i in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.1; done',
      'echo "mariadbd $pid did not stop within 60s" >&2; exit 1',
    ].join('\n'),
  );
  return {
    datadir,
    socket,
    port,
    pidFile,
    errorLog,
    commands: {
      start: `bash ${startScript}`,
      stop: `bash ${stopScript}`,
      status: ping,
      datadir: `echo ${datadir}`,
      port: `echo ${port}`,
    },
    sql: (statement) =>
      execFileSync('mariadb', ['--no-defaults', '-uroot', `--socket=${socket}`, '-N', '-B', '-e', statement], {
        encoding: 'utf8',
        timeout: 60000,
      }).trim(),
    async kill() {
      if (!existsSync(pidFile)) return;
      const pid = Number(readFileSync(pidFile, 'utf8').trim());
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        return;
      }
      for (let i = 0; i < 100; i++) {
        try {
          process.kill(pid, 0);
          await new Promise((r) => setTimeout(r, 100));
        } catch {
          return;
        }
      }
    },
  };
}

/** mariadb-install-db into datadir (0.5 s, ~114 MB). */
export function installDatadir(datadir: string): void {
  execFileSync(
    'mariadb-install-db',
    ['--no-defaults', '--user=root', `--datadir=${datadir}`, '--auth-root-authentication-method=normal', '--skip-test-db'],
    { stdio: 'ignore', timeout: 120000 },
  );
}

export function runScript(command: string): void {
  execFileSync('bash', ['-c', command], { stdio: 'ignore', timeout: 120000 });
}
