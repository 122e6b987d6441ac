// The seed methods by name, for checking requests: kept apart from seed-methods.ts (the charts and their
// steps, with xstate) so an agent without seeds answers without loading those.
export const SEED_METHODS = ['snapshot', 'backup', 'dump'] as const;
export type SeedMethod = (typeof SEED_METHODS)[number];

export function isSeedMethod(v: unknown): v is SeedMethod {
  return typeof v === 'string' && (SEED_METHODS as readonly string[]).includes(v);
}
