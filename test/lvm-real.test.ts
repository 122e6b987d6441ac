// The LVM backend against real device-mapper: a small qemu VM (test/support/lvm-vm.ts) with a Debian
// kernel, this host's own lvm2/e2fsprogs/xfsprogs/util-linux binaries, and the agent running inside it
// (it must: it mounts snapshots and reads their files and /proc/self/mountinfo). One boot for this file.
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './support/agent-process.js';
import { bootLvmVm, haveVmTools, type LvmVm } from './support/lvm-vm.js';

if (!haveVmTools) console.log('SKIPPED: the real LVM tests need qemu-system-x86 and busybox-static (installed by .ci/run)');

(haveVmTools ? describe : describe.skip)('a VM with real device-mapper, driven through its command port', () => {
  let vm: LvmVm;
  let dir: string;

  beforeAll(async () => {
    dir = tempDir('oa-lvm-real-');
    vm = await bootLvmVm({ shareDir: dir, forwardPorts: [3002] });
    console.log(`LVM VM booted in ${vm.bootMs} ms`);
  }, 240000);

  afterAll(async () => {
    await vm?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 60000);

  test("commands answer with their own stdout, stderr and exit status, output without a final newline included", async () => {
    expect(await vm.exec('printf out; printf err >&2; exit 3')).toEqual({ code: 3, stdout: 'out', stderr: 'err' });
    expect(await vm.exec("printf 'two\\nlines\\n'")).toEqual({ code: 0, stdout: 'two\nlines\n', stderr: '' });
    await expect(vm.sh('false')).rejects.toThrow('VM command exited 1: false');
  });

  test('the guest runs its own kernel with device-mapper snapshots, and this host’s lvm binary', async () => {
    expect(await vm.sh('uname -n')).toBe('oa-lvm-vm\n');
    expect(await vm.sh('uname -r')).not.toBe(readFileSync('/proc/sys/kernel/osrelease', 'utf8'));
    expect(await vm.sh('dmsetup targets')).toMatch(/^snapshot\s/m);
    expect(await vm.sh('lvm version')).toContain('LVM version');
    expect(await vm.sh('test -b /dev/vda && echo disk')).toBe('disk\n');
  });

  test('the shared directory is the same path on both sides, and guest files can be read', async () => {
    writeFileSync(join(dir, 'from-host'), 'hello guest');
    expect(await vm.sh(`cat ${join(dir, 'from-host')}; head -c 3 /dev/zero > ${join(dir, 'from-guest')}`)).toBe('hello guest');
    expect(readFileSync(join(dir, 'from-guest'))).toEqual(Buffer.alloc(3));
    await vm.sh('head -c 70000 /dev/urandom > /run/blob; sha256sum /run/blob > /run/blob.sum');
    const blob = await vm.readFile('/run/blob');
    expect(blob).toHaveLength(70000);
    const { createHash } = await import('node:crypto');
    expect((await vm.sh('cat /run/blob.sum')).split(' ')[0]).toBe(createHash('sha256').update(blob).digest('hex'));
    await expect(vm.readFile('/run/no-such-file')).rejects.toThrow('cannot read /run/no-such-file');
  });
});
