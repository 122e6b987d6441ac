// `npm run diagrams`: regenerates diagrams/ from the machine definitions; removes diagrams of machines
// that no longer exist. The diagrams test fails while diagrams/ differs from what this writes.
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { diagramsDir, findMachines, renderDiagrams, repoRoot } from '../src/diagrams/generate.js';

async function main(): Promise<void> {
  const machines = await findMachines();
  const files = await renderDiagrams(machines);
  mkdirSync(diagramsDir, { recursive: true });
  for (const [name, text] of files) {
    const file = join(diagramsDir, name);
    let current: string | undefined;
    try {
      current = readFileSync(file, 'utf8');
    } catch {
      current = undefined;
    }
    if (current === text) continue;
    // Whole files only: an interrupted run leaves the old diagram, never half a new one.
    writeFileSync(`${file}.tmp`, text);
    renameSync(`${file}.tmp`, file);
    console.log(`wrote ${relative(repoRoot, file)}`);
  }
  for (const name of readdirSync(diagramsDir)) {
    if (/\.(mmd|svg)$/.test(name) && !files.has(name)) {
      rmSync(join(diagramsDir, name));
      console.log(`removed ${relative(repoRoot, join(diagramsDir, name))} (no such machine)`);
    }
  }
  console.log(`${machines.length} machine(s): ${machines.map((m) => `${m.machine.id} (machines/${m.module.replace(/\.js$/, '.ts')})`).join(', ') || 'none'}`);
}

main().catch((err) => {
  console.error(`diagrams: ${(err as Error).stack ?? String(err)}`);
  process.exit(1);
});
