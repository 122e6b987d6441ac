import { describe, expect, test } from '@jest/globals';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { and, fromPromise, not, setup } from 'xstate';
import { diagramsDir, findMachines, renderDiagrams } from '../src/diagrams/generate.js';
import { machineGraph, isStateMachine } from '../src/diagrams/machine-graph.js';
import { toDot, toMermaid, dotToSvg } from '../src/diagrams/render.js';

// A small seed-like chart exercising what the writers must show: invoke onDone/onError, guards
// (named, not(), and()), always, after, a nested compound state with its own initial and final.
const demo = setup({
  actors: { stopMySQL: fromPromise(async () => undefined), receive: fromPromise(async () => undefined) },
  guards: { hasSpace: () => true, canRetry: () => false, isSafe: () => true },
}).createMachine({
  id: 'demoSeed',
  initial: 'stopMySQL',
  on: { SHUTDOWN: '.aborted' },
  states: {
    stopMySQL: {
      invoke: { src: 'stopMySQL', onDone: 'checkSpace', onError: 'failed' },
      on: { ABORT: 'aborted' },
    },
    checkSpace: { always: [{ guard: 'hasSpace', target: 'receiving' }, { guard: not('hasSpace'), target: 'failed' }] },
    receiving: {
      initial: 'waiting',
      states: {
        waiting: { after: { 5000: 'copying' }, on: { CONNECTED: 'copying' } },
        copying: { invoke: { src: 'receive', onDone: 'copied', onError: { guard: and(['canRetry', 'isSafe']), target: 'waiting' } } },
        copied: { type: 'final' },
      },
      onDone: 'done',
      on: { ABORT: 'aborted' },
    },
    done: { type: 'final' },
    failed: { type: 'final' },
    aborted: { type: 'final' },
  },
});

describe('state machine diagrams', () => {
  test('diagrams/ holds exactly what `npm run diagrams` writes from machines/', async () => {
    const expected = await renderDiagrams(await findMachines());
    const present = existsSync(diagramsDir) ? readdirSync(diagramsDir).filter((f) => /\.(mmd|svg)$/.test(f)) : [];
    const problems: string[] = [];
    for (const [name, text] of [...expected].sort(([a], [b]) => a.localeCompare(b))) {
      const file = join(diagramsDir, name);
      if (!existsSync(file)) problems.push(`diagrams/${name} is missing`);
      else if (readFileSync(file, 'utf8') !== text) problems.push(`diagrams/${name} is stale`);
    }
    for (const name of present) if (!expected.has(name)) problems.push(`diagrams/${name} has no machine in machines/`);
    const message = problems.length > 0 ? `${problems.join('; ')}: run npm run diagrams and commit diagrams/` : '';
    expect(message).toBe('');
  });

  test('a machine is recognised by its shape and other exports are not', () => {
    expect(isStateMachine(demo)).toBe(true);
    expect(isStateMachine({ id: 'x', config: {} })).toBe(false);
    expect(isStateMachine(() => undefined)).toBe(false);
  });

  test('the Mermaid diagram shows states, invoked actors, guards, done/error transitions and nesting', () => {
    const mmd = toMermaid(machineGraph(demo));
    const lines = mmd.split('\n').map((l) => l.trim());
    expect(lines).toContain('stateDiagram-v2');
    expect(lines).toContain('[*] --> stopMySQL');
    expect(lines).toContain('stopMySQL : invoke stopMySQL');
    expect(lines).toContain('stopMySQL --> checkSpace : onDone(stopMySQL)');
    expect(lines).toContain('stopMySQL --> failed : onError(stopMySQL)');
    expect(lines).toContain('checkSpace --> receiving : always [hasSpace]');
    expect(lines).toContain('checkSpace --> failed : always [not(hasSpace)]');
    expect(lines).toContain('state "receiving" as receiving {');
    expect(lines).toContain('[*] --> receiving__waiting');
    expect(lines).toContain('receiving__waiting --> receiving__copying : after 5s');
    expect(lines).toContain('receiving__copying --> receiving__waiting : onError(receive) [and(canRetry, isSafe)]');
    expect(lines).toContain('receiving --> done : onDone');
    expect(lines).toContain('done --> [*]');
    expect(lines).toContain('__any_state__ --> aborted : SHUTDOWN');
    expect(lines.filter((l) => l.endsWith('--> aborted : ABORT'))).toEqual(['stopMySQL --> aborted : ABORT', 'receiving --> aborted : ABORT']);
  });

  test('the SVG marks every state with an id the web view can highlight, and renders the same bytes twice', async () => {
    const dot = toDot(machineGraph(demo));
    const svg = await dotToSvg(dot);
    expect(svg.startsWith('<?xml') || svg.startsWith('<svg') || svg.includes('<svg')).toBe(true);
    for (const path of ['stopMySQL', 'checkSpace', 'receiving', 'receiving.waiting', 'receiving.copying', 'receiving.copied', 'done', 'failed', 'aborted']) {
      expect(svg).toContain(`id="state:${path}"`);
    }
    expect(svg).toContain('always [not(hasSpace)]');
    expect(svg).toContain('invoke: receive');
    expect(svg).toContain('id="state:*"');
    expect(await dotToSvg(toDot(machineGraph(demo)))).toBe(svg);
  });
});
