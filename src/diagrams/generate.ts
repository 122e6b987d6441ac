// Finds every machine exported by the compiled machines/ modules and renders each to
// <machine-id>.mmd and <machine-id>.svg. Used by `npm run diagrams` and by the staleness test.
import { readdirSync, existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { AnyStateMachine } from 'xstate';
import { isStateMachine, machineGraph } from './machine-graph.js';
import { dotToSvg, toDot, toMermaid } from './render.js';

/** The repository root, from dist/src/diagrams/. */
export const repoRoot = resolve(new URL('.', import.meta.url).pathname, '../../..');
export const compiledMachinesDir = join(repoRoot, 'dist/machines');
export const diagramsDir = join(repoRoot, 'diagrams');

export interface FoundMachine {
  module: string;
  exportName: string;
  machine: AnyStateMachine;
}

/** Imports each machines/*.js and keeps the exports shaped like machines, sorted by machine id. */
export async function findMachines(dir = compiledMachinesDir): Promise<FoundMachine[]> {
  if (!existsSync(dir)) return [];
  const found: FoundMachine[] = [];
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.js')).sort()) {
    const mod = (await import(pathToFileURL(join(dir, file)).href)) as Record<string, unknown>;
    for (const [exportName, value] of Object.entries(mod).sort(([a], [b]) => a.localeCompare(b))) {
      if (isStateMachine(value) && !found.some((f) => f.machine === value)) found.push({ module: file, exportName, machine: value });
    }
  }
  const ids = new Map<string, FoundMachine>();
  for (const f of found) {
    const other = ids.get(f.machine.id);
    if (other) {
      throw new Error(
        `machines ${other.module}:${other.exportName} and ${f.module}:${f.exportName} share the id "${f.machine.id}"; give each machine its own id`,
      );
    }
    ids.set(f.machine.id, f);
  }
  return found.sort((a, b) => a.machine.id.localeCompare(b.machine.id));
}

/** File name -> contents for every diagram, e.g. "seedTarget.mmd", "seedTarget.svg". */
export async function renderDiagrams(machines: FoundMachine[]): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  for (const { machine } of machines) {
    const graph = machineGraph(machine);
    files.set(`${machine.id}.mmd`, toMermaid(graph));
    files.set(`${machine.id}.svg`, await dotToSvg(toDot(graph)));
  }
  return files;
}
