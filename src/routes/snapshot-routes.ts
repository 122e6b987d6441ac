// The original's LVM routes (lvs, lv, mount, mountlv, umount, removelv), answered by the
// configured snapshot backend (LVM or btrfs) with the original's JSON shapes.
import type { Context } from 'koa';
import type { Routes } from '../http/routes.js';
import type { AgentServices } from '../services.js';
import { badRequest } from '../errors.js';
import { lvPattern, snapshotName } from '../validate.js';
import { keyedSingleFlight, singleFlight } from '../single-flight.js';

/** The volume from /route/:lv or ?lv= (the original read both). */
function volumeParam(ctx: Context, snapshotsDir: string | undefined): string {
  const fromPath = (ctx.params as Record<string, string | undefined>).lv;
  const raw = fromPath !== undefined && fromPath !== '' ? fromPath : ctx.query.lv;
  if (raw === undefined || raw === '') return '';
  return snapshotName(raw, snapshotsDir);
}

export function registerSnapshotRoutes(routes: Routes, services: AgentServices): void {
  const { config, snapshots } = services;
  const snapshotsDir = config.SnapshotBackend === 'btrfs' ? config.BtrfsSnapshotsDir : undefined;
  const required = (ctx: Context) => {
    const lv = volumeParam(ctx, snapshotsDir);
    if (lv === '') throw badRequest('no volume given', 'pass it as ?lv=NAME (or /NAME)');
    return lv;
  };

  // Reports that orchestrator polls share one run among concurrent callers (nothing kept after it).
  const list = keyedSingleFlight((pattern: string) => snapshots.list(pattern));
  const mount = singleFlight(() => snapshots.getMount(config.SnapshotMountPoint));
  routes.read('/api/lvs', () => list(''));
  routes.read('/api/lvs/:pattern', (ctx) => list(lvPattern(ctx.params.pattern)));
  // Orchestrator seeds from the first volume listed here, so only snapshots are listed (the original's
  // default lvs format dropped other volumes' lines, having no snap_percent for them).
  routes.read('/api/lvs-snapshots', async () => (await list(config.SnapshotVolumesFilter)).filter((v) => v.IsSnapshot));
  routes.read('/api/lv', (ctx) => snapshots.get(volumeParam(ctx, snapshotsDir)));
  routes.read('/api/lv/:lv', (ctx) => snapshots.get(volumeParam(ctx, snapshotsDir)));
  routes.read('/api/mount', () => mount());

  routes.action('/api/mountlv', (ctx) => snapshots.mount(required(ctx), config.SnapshotMountPoint));
  routes.action('/api/mountlv/:lv', (ctx) => snapshots.mount(required(ctx), config.SnapshotMountPoint));
  routes.action('/api/umount', () => snapshots.unmount(config.SnapshotMountPoint));
  routes.action('/api/removelv', async (ctx) => (await snapshots.remove(required(ctx)), true));
  routes.action('/api/removelv/:lv', async (ctx) => (await snapshots.remove(required(ctx)), true));
}
