// Module customization hooks for load-recorder.ts (they run on the loader's own thread).
import { appendFileSync } from 'node:fs';

type Next = (url: string, context: unknown) => Promise<unknown>;

export async function load(url: string, context: unknown, next: Next): Promise<unknown> {
  const result = await next(url, context);
  const file = process.env.LOAD_RECORD_FILE;
  if (file) appendFileSync(file, `${url}\n`);
  return result;
}
