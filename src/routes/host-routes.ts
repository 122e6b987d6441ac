// Host facts and the operator's commands: disk usage, free space, the error log, snapshot host lists,
// create-snapshot, custom commands and post-copy.
import { realpath } from 'node:fs/promises';
import type { Routes } from '../http/routes.js';
import type { AgentServices } from '../services.js';
import { AgentError } from '../errors.js';
import { apiResponse } from '../http/respond.js';
import * as validate from '../validate.js';
import { mysqlErrorLogTail } from '../host/error-log.js';
import { availableSnapshotHosts, postCopy, runCustomCommand } from '../host/operator-commands.js';
import { log } from '../log.js';
import { sharedReads, singleFlight } from '../single-flight.js';

async function realOrSelf(path: string): Promise<string> {
  try {
    return await realpath(path);
  } catch {
    return path;
  }
}

export function registerHostRoutes(routes: Routes, services: AgentServices): void {
  const { config, datadir } = services;
  // Concurrent identical reports share one run (one datadir command, one walk); nothing is kept after it.
  const mysql = sharedReads(services.mysql);
  const mysqlDu = singleFlight(async () => datadir.diskUsage(await mysql.datadir()));
  const snapshotHostsLocal = singleFlight(() => availableSnapshotHosts(config, true));
  const snapshotHosts = singleFlight(() => availableSnapshotHosts(config, false));

  /** Where /api/du may look: the datadir, the snapshot mount point and DiskUsageAllowedPaths. */
  const duRoots = async (): Promise<string[]> => {
    const roots = [config.SnapshotMountPoint, ...config.DiskUsageAllowedPaths];
    if (config.MySQLDatadirCommand.trim() !== '') {
      try {
        roots.push(await mysql.datadir());
      } catch (err) {
        log.warn('du: datadir unknown, not offered as a root', { error: (err as Error).message });
      }
    }
    return roots.filter((r) => r.trim() !== '');
  };

  routes.read('/api/du', async (ctx) => {
    const roots = await duRoots();
    const path = validate.pathWithin(ctx.query.path, roots);
    // Symlinks could lead out of an allowed root: check the real path against the real roots too.
    const real = await realOrSelf(path);
    const realRoots = await Promise.all(roots.map(realOrSelf));
    if (!realRoots.some((root) => validate.isWithin(root, real))) {
      throw new AgentError('forbidden', `path ${path} resolves to ${real}, outside the places this agent may read`);
    }
    return datadir.diskUsage(real);
  });

  routes.read('/api/mysql-du', () => mysqlDu());
  routes.read('/api/mysql-datadir-available-space', async () => datadir.availableSpace(await mysql.datadir()));
  routes.read('/api/mysql-error-log-tail', () => mysqlErrorLogTail(config));

  routes.read('/api/available-snapshots-local', () => snapshotHostsLocal());
  routes.read('/api/available-snapshots', () => snapshotHosts());
  // The snapshot backend runs CreateSnapshotCommand (btrfs: or snapshots BtrfsSnapshotSource itself).
  routes.action('/api/create-snapshot', async () => {
    await services.snapshots.create();
    return true;
  });

  routes.action('/api/custom-commands/:cmd', async (ctx) => {
    const name = validate.commandName(ctx.params.cmd);
    return apiResponse('OK', await runCustomCommand(config, name));
  });

  // The original routed /api/post-copy/:sourceHost; orchestrator calls /api/post-copy/?sourceHost=.
  const runPostCopy = async (raw: unknown) => {
    await postCopy(config, raw === undefined || raw === '' ? undefined : validate.host(raw));
    return true;
  };
  routes.action('/api/post-copy', (ctx) => runPostCopy(ctx.query.sourceHost));
  routes.action('/api/post-copy/:sourceHost', (ctx) => runPostCopy(ctx.params.sourceHost));
}
