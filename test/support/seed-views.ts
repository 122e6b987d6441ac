// Seed views as the seed manager emits them, and an in-memory feed for testing the views on their own.
import type { SeedFeed, SeedView } from '../../src/seed-feed.js';

export function seedView(overrides: Partial<SeedView> & { id: string }): SeedView {
  return {
    role: 'target',
    machine: 'seedTarget',
    machineVersion: 1,
    state: 'receiving',
    status: 'active',
    createdAt: '2026-01-01T00:00:00.000Z',
    updatedAt: '2026-01-01T00:00:00.000Z',
    params: {},
    history: [],
    progress: null,
    error: null,
    transfer: null,
    ...overrides,
  };
}

export class MemoryFeed implements SeedFeed {
  private views = new Map<string, SeedView>();
  private listeners = new Set<(view: SeedView) => void>();
  constructor(initial: SeedView[] = []) {
    for (const v of initial) this.views.set(v.id, v);
  }
  list(): SeedView[] {
    return [...this.views.values()];
  }
  subscribe(listener: (view: SeedView) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  emit(view: SeedView): void {
    this.views.set(view.id, view);
    for (const l of this.listeners) l(view);
  }
  listenerCount(): number {
    return this.listeners.size;
  }
}
