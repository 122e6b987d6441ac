// Writes a machine graph as Mermaid (for reading in the repo) and as DOT rendered to SVG by Graphviz
// compiled to WebAssembly (@viz-js/viz): no browser, same bytes on every run. SVG groups carry
// id="state:<path>" so the web view can highlight the current state.
import { instance } from '@viz-js/viz';
import type { MachineGraph, StateInfo } from './machine-graph.js';

/** The SVG element id of a state, shared with the web view's highlighting. */
export function svgStateId(path: string): string {
  return `state:${path}`;
}

function mermaidId(path: string): string {
  return path.replace(/\./g, '__').replace(/[^A-Za-z0-9_]/g, '_') || 'root';
}

function mermaidText(text: string): string {
  // Mermaid ends a label at ';' or '#' and reads ':' specially in some positions.
  return text.replace(/[;#:"]/g, ' ').replace(/\s+/g, ' ').trim();
}

function parentOf(path: string): string {
  const i = path.lastIndexOf('.');
  return i < 0 ? '' : path.slice(0, i);
}

const anyStateMermaid = '__any_state__';

export function toMermaid(graph: MachineGraph): string {
  const lines = ['---', `title: ${graph.id}`, '---', 'stateDiagram-v2'];
  const emitted = new Set<number>();
  const writeState = (state: StateInfo, indent: string): void => {
    const id = mermaidId(state.path);
    if (state.children.length > 0) {
      lines.push(`${indent}state "${mermaidText(state.key)}" as ${id} {`);
      writeChildren(state, `${indent}  `);
      lines.push(`${indent}}`);
    } else {
      lines.push(`${indent}state "${mermaidText(state.key)}" as ${id}`);
    }
    if (state.invokes.length > 0) lines.push(`${indent}${id} : invoke ${mermaidText(state.invokes.join(', '))}`);
  };
  const writeChildren = (parent: StateInfo, indent: string): void => {
    for (const child of parent.children) writeState(child, indent);
    if (parent.initial !== undefined) lines.push(`${indent}[*] --> ${mermaidId(parent.initial)}`);
    // Transitions between siblings stay inside their composite; the rest go at the top level.
    graph.transitions.forEach((t, i) => {
      if (parentOf(t.from) === parent.path && parentOf(t.to) === parent.path && t.from !== parent.path) {
        lines.push(`${indent}${mermaidId(t.from)} --> ${mermaidId(t.to)} : ${mermaidText(t.label)}`);
        emitted.add(i);
      }
    });
    for (const child of parent.children) if (child.type === 'final') lines.push(`${indent}${mermaidId(child.path)} --> [*]`);
  };
  writeChildren(graph.root, '  ');
  // Transitions on the machine itself apply in every state: drawn from an "any state" box.
  if (graph.transitions.some((t) => t.from === '')) lines.push(`  state "any state" as ${anyStateMermaid}`);
  graph.transitions.forEach((t, i) => {
    if (!emitted.has(i)) lines.push(`  ${t.from === '' ? anyStateMermaid : mermaidId(t.from)} --> ${mermaidId(t.to)} : ${mermaidText(t.label)}`);
  });
  return `${lines.join('\n')}\n`;
}

function q(text: string): string {
  return `"${text.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`;
}

const initialNode = (path: string) => (path === '' ? '__initial__' : `${path}.__initial__`);
const clusterName = (path: string) => `cluster_${path}`;
const anyStateDot = '__any_state__';

export function toDot(graph: MachineGraph): string {
  const compound = new Set<string>();
  const out: string[] = [
    `digraph ${q(graph.id)} {`,
    `  graph [id=${q(`machine:${graph.id}`)}, label=${q(graph.id)}, labelloc=t, fontname="Helvetica", fontsize=14, rankdir=TB, compound=true, nodesep=0.4, ranksep=0.45];`,
    // Wide margins: a browser without Helvetica draws the labels in a wider font than Graphviz measured.
    '  node [shape=box, style="rounded,filled", fillcolor="#ffffff", color="#455a64", fontname="Helvetica", fontsize=11, margin="0.25,0.08"];',
    '  edge [fontname="Helvetica", fontsize=9, color="#607d8b", fontcolor="#37474f"];',
  ];
  const writeState = (state: StateInfo, indent: string): void => {
    if (state.children.length > 0) {
      compound.add(state.path);
      out.push(`${indent}subgraph ${q(clusterName(state.path))} {`);
      out.push(
        `${indent}  graph [id=${q(svgStateId(state.path))}, class="state compound", label=${q(
          state.invokes.length > 0 ? `${state.key}\ninvoke: ${state.invokes.join(', ')}` : state.key,
        )}, style="rounded", color="#90a4ae"];`,
      );
      writeChildren(state, `${indent}  `);
      out.push(`${indent}}`);
      return;
    }
    const label = state.invokes.length > 0 ? `${state.key}\ninvoke: ${state.invokes.join(', ')}` : state.key;
    const extra = state.type === 'final' ? ', peripheries=2' : '';
    out.push(`${indent}${q(state.path)} [id=${q(svgStateId(state.path))}, class=${q(`state ${state.type}`)}, label=${q(label)}${extra}];`);
  };
  const writeChildren = (parent: StateInfo, indent: string): void => {
    if (parent.initial !== undefined) {
      out.push(`${indent}${q(initialNode(parent.path))} [shape=point, width=0.12, style=filled, fillcolor="#263238", label=""];`);
    }
    for (const child of parent.children) writeState(child, indent);
  };
  writeChildren(graph.root, '  ');
  if (graph.transitions.some((t) => t.from === '')) {
    out.push(`  ${q(anyStateDot)} [id=${q(svgStateId('*'))}, class="any", label="any state", style="rounded,dashed"];`);
  }
  // An arrow to or from a compound state is drawn to its initial point, clipped at the cluster edge.
  const end = (path: string) => (path === '' ? anyStateDot : compound.has(path) ? initialNode(path) : path);
  const initials: StateInfo[] = [];
  const collect = (s: StateInfo) => {
    if (s.initial !== undefined) initials.push(s);
    s.children.forEach(collect);
  };
  collect(graph.root);
  for (const s of initials) {
    const attrs = compound.has(s.initial!) ? ` [lhead=${q(clusterName(s.initial!))}]` : '';
    out.push(`  ${q(initialNode(s.path))} -> ${q(end(s.initial!))}${attrs};`);
  }
  for (const t of graph.transitions) {
    const attrs = [`label=${q(` ${t.label} `)}`];
    if (compound.has(t.from)) attrs.push(`ltail=${q(clusterName(t.from))}`);
    if (compound.has(t.to) && t.to !== t.from) attrs.push(`lhead=${q(clusterName(t.to))}`);
    out.push(`  ${q(end(t.from))} -> ${q(end(t.to))} [${attrs.join(', ')}];`);
  }
  out.push('}');
  return `${out.join('\n')}\n`;
}

let vizInstance: ReturnType<typeof instance> | undefined;

export async function dotToSvg(dot: string): Promise<string> {
  vizInstance ??= instance();
  const viz = await vizInstance;
  const result = viz.render(dot, { format: 'svg' });
  if (result.status !== 'success') {
    throw new Error(`graphviz could not render the diagram: ${result.errors.map((e) => e.message).join('; ')}`);
  }
  return result.output;
}
