// Reads an XState machine into a plain graph of states and transitions, in definition order, so the
// Mermaid and DOT writers (and the web view's highlighting) work from one description of the chart.
import type { AnyStateMachine, AnyStateNode } from 'xstate';
import { toDirectedGraph, type DirectedGraphNode } from 'xstate/graph';

export interface StateInfo {
  /** Path below the root joined with '.', e.g. "postCopy.running"; '' for the root. */
  path: string;
  key: string;
  type: 'atomic' | 'compound' | 'parallel' | 'final' | 'history';
  /** Path of the initial child (compound states only). */
  initial?: string;
  /** Names of the actors invoked while in this state. */
  invokes: string[];
  children: StateInfo[];
}

export interface TransitionInfo {
  from: string;
  to: string;
  /** What a reader should see on the arrow: event, "onDone(actor)", "after 5s", "always", plus [guard]. */
  label: string;
}

export interface MachineGraph {
  id: string;
  root: StateInfo;
  transitions: TransitionInfo[];
}

/** True for a value shaped like an XState machine (what a machines/*.ts module exports). */
export function isStateMachine(value: unknown): value is AnyStateMachine {
  if (value === null || typeof value !== 'object') return false;
  const v = value as Record<string, unknown>;
  return typeof v.id === 'string' && typeof v.root === 'object' && v.root !== null && typeof v.config === 'object' && typeof v.transition === 'function';
}

function pathOf(node: AnyStateNode): string {
  return node.path.join('.');
}

/** A guard's name as written in the machine: 'canResume', 'not(hasSpace)', 'and(a, b)'. */
export function guardName(guard: unknown): string | undefined {
  if (guard === undefined || guard === null) return undefined;
  if (typeof guard === 'string') return guard;
  if (typeof guard === 'function') {
    const inner = (guard as { guards?: unknown[] }).guards;
    if (Array.isArray(inner)) return `${guard.name}(${inner.map((g) => guardName(g) ?? 'guard').join(', ')})`;
    return guard.name && guard.name !== 'guard' ? guard.name : 'inline guard';
  }
  if (typeof guard === 'object' && typeof (guard as { type?: unknown }).type === 'string') return (guard as { type: string }).type;
  return 'guard';
}

/** Turns XState's internal event names into what the machine author wrote. */
export function eventLabel(eventType: string, machineId: string, actorNames: ReadonlyMap<string, string> = new Map()): string {
  let m = /^xstate\.done\.actor\.(.+)$/.exec(eventType);
  if (m) return `onDone(${actorNames.get(m[1]) ?? m[1]})`;
  m = /^xstate\.error\.actor\.(.+)$/.exec(eventType);
  if (m) return `onError(${actorNames.get(m[1]) ?? m[1]})`;
  if (eventType.startsWith('xstate.done.state.')) return 'onDone';
  m = /^xstate\.after\.([^.]+)\./.exec(eventType);
  if (m) {
    const ms = Number(m[1]);
    return Number.isFinite(ms) ? `after ${ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`}` : `after ${m[1]}`;
  }
  if (eventType === '*') return 'any event';
  return eventType.replace(`${machineId}.`, '');
}

function invokedNames(node: AnyStateNode): string[] {
  return node.invoke.map((inv) => (typeof inv.src === 'string' ? inv.src : inv.id));
}

function readState(graph: DirectedGraphNode, machineId: string, transitions: TransitionInfo[]): StateInfo {
  const node = graph.stateNode;
  const from = pathOf(node);
  // Invocations without an explicit id get a generated one; show the actor's name instead.
  const actorNames = new Map(node.invoke.map((inv) => [inv.id, typeof inv.src === 'string' ? inv.src : inv.id]));
  for (const edge of graph.edges) {
    const guard = guardName(edge.transition.guard);
    const event = eventLabel(edge.label.text, machineId, actorNames);
    transitions.push({ from, to: pathOf(edge.target), label: guard ? `${event} [${guard}]` : event });
  }
  for (const t of node.always ?? []) {
    const guard = guardName(t.guard);
    for (const target of t.target ?? [node]) {
      transitions.push({ from, to: pathOf(target), label: guard ? `always [${guard}]` : 'always' });
    }
  }
  const initialTarget = node.type === 'compound' ? node.initial?.target?.[0] : undefined;
  return {
    path: from,
    key: node.key,
    type: node.type,
    initial: initialTarget ? pathOf(initialTarget) : undefined,
    invokes: invokedNames(node),
    children: graph.children.map((child) => readState(child, machineId, transitions)),
  };
}

export function machineGraph(machine: AnyStateMachine): MachineGraph {
  const transitions: TransitionInfo[] = [];
  const root = readState(toDirectedGraph(machine), machine.id, transitions);
  return { id: machine.id, root, transitions };
}
