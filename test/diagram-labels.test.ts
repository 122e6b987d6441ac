import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { launchBrowser, type Browser } from './support/browser.js';
import { repoRoot } from './support/agent-process.js';

// The generated diagrams as a browser draws them: every state's label fits inside its box, with the
// fonts this machine has (no Helvetica here, so the browser falls back to a wider font: the worst case).

describe('diagram labels in Chromium', () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await launchBrowser();
  });
  afterAll(async () => browser?.close());

  for (const machine of ['seed-target', 'seed-source', 'registration']) {
    test(`every state label of ${machine} fits inside its box`, async () => {
      const page = await browser.context.newPage();
      await page.setContent(`<!doctype html><body>${readFileSync(join(repoRoot, 'diagrams', `${machine}.svg`), 'utf8')}</body>`);
      const overflows = await page.evaluate(() => {
        const out: string[] = [];
        for (const node of document.querySelectorAll('g.node')) {
          const shape = node.querySelector('path, polygon, ellipse');
          const texts = [...node.querySelectorAll('text')];
          if (!shape || texts.length === 0) continue;
          const box = (shape as SVGGraphicsElement).getBBox();
          for (const t of texts) {
            const b = (t as SVGGraphicsElement).getBBox();
            if (b.x < box.x || b.x + b.width > box.x + box.width) out.push(`${node.id}: "${t.textContent}" ${b.width.toFixed(0)} wide in a ${box.width.toFixed(0)} box`);
          }
        }
        return { out, nodes: document.querySelectorAll('g.node').length };
      });
      expect(overflows.nodes).toBeGreaterThan(3);
      expect(overflows.out).toEqual([]);
      await page.close();
    });
  }
});
