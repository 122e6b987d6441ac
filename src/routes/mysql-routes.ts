// MySQL service routes: port, status, stop, start, and deleting the datadir's content (only while stopped).
import type { Routes } from '../http/routes.js';
import type { AgentServices } from '../services.js';
import { AgentError } from '../errors.js';
import { log } from '../log.js';
import { sharedReads } from '../single-flight.js';

export function registerMySQLRoutes(routes: Routes, services: AgentServices): void {
  const { mysql, datadir } = services;
  // Reports share one run among concurrent callers; the purge below reads for itself, always fresh.
  const reads = sharedReads(mysql);

  routes.read('/api/mysql-port', () => reads.port());
  // Without a status command the original answered true, so orchestrator refuses to seed onto a host
  // whose state nobody can know. Our own purge and seed steps refuse outright (isRunning throws).
  let warnedNoStatus = false;
  routes.read('/api/mysql-status', () => {
    if (services.config.MySQLServiceStatusCommand.trim() !== '') return reads.isRunning();
    (warnedNoStatus ? log.debug : log.warn)('mysql-status answers true (as the original): MySQLServiceStatusCommand is not configured, so the agent cannot tell whether MySQL runs', {
      hint: 'set MySQLServiceStatusCommand (exit code 0 = running)',
    });
    warnedNoStatus = true;
    return true;
  });

  routes.action('/api/mysql-stop', async () => {
    await mysql.stop();
    return true;
  });
  routes.action('/api/mysql-start', async () => {
    await mysql.start();
    return true;
  });

  // The original deleted without looking; deleting the files of a running server corrupts it.
  routes.action('/api/delete-mysql-datadir', async () => {
    if (services.config.MySQLServiceStatusCommand.trim() === '') {
      throw new AgentError('config', 'refusing to delete the MySQL datadir: MySQLServiceStatusCommand is not configured, so the agent cannot check that MySQL is stopped', {
        hint: 'set MySQLServiceStatusCommand (exit code 0 = running)',
      });
    }
    const dir = await mysql.datadir();
    if (await mysql.isRunning()) {
      throw new AgentError('conflict', `refusing to delete the MySQL datadir ${dir}: MySQL is running`, {
        hint: 'stop MySQL first (/api/mysql-stop), then retry',
      });
    }
    await datadir.purge(dir);
    return true;
  });
}
