// The binary log position a dump records (mariadb-dump --master-data=2) is read from the stream as it passes
// to the loading client, wherever the chunks happen to be cut, and a line that only looks like one inside the
// data (escaped: a value's newline is written as \n) is not taken for it.
import { describe, expect, test } from '@jest/globals';
import { DumpPositionScanner, dumpArgs } from '../src/seeds/steps/dump-steps.js';

const header = [
  '/*M!999999\\- enable the sandbox mode */ ',
  '-- MariaDB dump 10.19  Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64)',
  '',
  '-- CHANGE MASTER TO MASTER_LOG_FILE=\'source-bin.000003\', MASTER_LOG_POS=98765;',
  '',
  'USE `app`;',
  "INSERT INTO `k` VALUES ('a','one\\n-- CHANGE MASTER TO MASTER_LOG_FILE=\\'x\\', MASTER_LOG_POS=4;');",
  '-- SET GLOBAL gtid_slave_pos=\'0-1-42\';',
  '-- Dump completed on 2026-11-26 16:55:55',
  '',
].join('\n');

async function scan(text: string, cut: number[]): Promise<{ out: string; scanner: DumpPositionScanner }> {
  const scanner = new DumpPositionScanner();
  const parts: Buffer[] = [];
  scanner.on('data', (c: Buffer) => parts.push(c));
  const bytes = Buffer.from(text, 'latin1');
  let at = 0;
  for (const end of [...cut, bytes.length]) {
    scanner.write(bytes.subarray(at, end));
    at = end;
  }
  scanner.end();
  await new Promise((r) => scanner.once('end', r));
  return { out: Buffer.concat(parts).toString('latin1'), scanner };
}

describe('the position a dump records', () => {
  test('is read wherever the stream is cut, and the data passes unchanged', async () => {
    for (let cut = 1; cut < header.length; cut += 7) {
      const { out, scanner } = await scan(header, [cut]);
      expect(out).toBe(header);
      expect(scanner.recorded()).toEqual({ file: 'source-bin.000003', position: 98765, gtid: '0-1-42' });
    }
  });

  test('in one byte chunks too', async () => {
    const { scanner } = await scan(header, Array.from({ length: header.length - 1 }, (_, i) => i + 1));
    expect(scanner.recorded()).toEqual({ file: 'source-bin.000003', position: 98765, gtid: '0-1-42' });
  });

  test('a dump without one (binary logging off) records none', async () => {
    const { scanner } = await scan(header.replace(/-- CHANGE MASTER[^\n]*\n/, ''), [100]);
    expect(scanner.recorded()).toBeNull();
  });

  test('the dump program gets the credentials file first, the position only with a binary log, and schema names never read as options', () => {
    const args = dumpArgs('/etc/agent.cnf', ['app', '-x'], true);
    expect(args[0]).toBe('--defaults-extra-file=/etc/agent.cnf');
    expect(args).toContain('--master-data=2');
    expect(args).toContain('--single-transaction');
    expect(args.slice(args.indexOf('--')).join(' ')).toBe('-- app -x');
    expect(dumpArgs('/etc/agent.cnf', ['app'], false)).not.toContain('--master-data=2');
  });
});
