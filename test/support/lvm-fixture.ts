// Metadata-only LVM on a loop device (this kernel has no device-mapper): a private lvm.conf with
// activation off and a filter that sees only our loop device, a VG with an origin LV, and a snapshot LV
// written into the metadata with vgcfgrestore so that `lvs` reports a real snapshot relationship.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from './btrfs-fixture.js';

export interface LvmFixture {
  vg: string;
  device: string;
  /** Environment for every lvm command, ours and the agent's. */
  env: Record<string, string>;
  lvs(): string;
  cleanup(): void;
}

/** Adds a hidden snapshot0 LV (origin -> cow) to a vgcfgbackup text, as lvcreate --snapshot would. */
function withSnapshot(metadata: string, origin: string, cow: string, originExtents: number): string {
  const seqno = /seqno = (\d+)/.exec(metadata);
  if (!seqno) throw new Error('vgcfgbackup output has no seqno');
  const snapshotLv = `
		snapshot0 {
			id = "oaTest-0000-0000-0000-0000-0000-000000"
			status = ["READ"]
			flags = []
			segment_count = 1

			segment1 {
				start_extent = 0
				extent_count = ${originExtents}
				type = "snapshot"
				chunk_size = 8
				origin = "${origin}"
				cow_store = "${cow}"
			}
		}
`;
  return metadata
    .replace(/seqno = \d+/, `seqno = ${Number(seqno[1]) + 1}`)
    .replace('logical_volumes {\n', `logical_volumes {\n${snapshotLv}`);
}

export function createLvm(dir: string, vg: string): LvmFixture {
  const image = join(dir, 'pv.img');
  run('truncate', ['-s', '256M', image]);
  const device = run('losetup', ['-f', '--show', image]).trim();
  const confDir = join(dir, 'lvmconf');
  mkdirSync(confDir);
  writeFileSync(
    join(confDir, 'lvm.conf'),
    `global { activation = 0 }\ndevices { filter = [ "a|^${device}$|", "r|.*|" ] }\n`,
  );
  const env = { LVM_SYSTEM_DIR: confDir, LVM_SUPPRESS_FD_WARNINGS: '1' };
  const lvm = (cmd: string, args: string[]) => run(cmd, args, env);
  const fixture: LvmFixture = {
    vg,
    device,
    env,
    lvs: () => lvm('lvs', ['--noheadings', '-o', 'lv_name,origin', vg]),
    cleanup() {
      for (const [cmd, args] of [
        ['vgremove', ['-f', vg]],
        ['pvremove', ['-y', device]],
        ['losetup', ['-d', device]],
      ] as const) {
        try {
          lvm(cmd, [...args]);
        } catch {
          /* best effort: later steps still run */
        }
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    lvm('pvcreate', [device]);
    lvm('vgcreate', [vg, device]);
    lvm('lvcreate', ['-an', '-Zn', '-L', '100M', '-n', 'data', vg]);
    lvm('lvcreate', ['-an', '-Zn', '-L', '20M', '-n', 'snap1', vg]);
    lvm('lvcreate', ['-an', '-Zn', '-L', '20M', '-n', 'other', vg]);
    const backup = join(dir, 'vg.txt');
    lvm('vgcfgbackup', ['-f', backup, vg]);
    const extents = Number(/data \{[\s\S]*?extent_count = (\d+)/.exec(readFileSync(backup, 'utf8'))?.[1]);
    writeFileSync(backup, withSnapshot(readFileSync(backup, 'utf8'), 'data', 'snap1', extents));
    lvm('vgcfgrestore', ['-f', backup, vg]);
  } catch (err) {
    fixture.cleanup();
    throw err;
  }
  return fixture;
}
