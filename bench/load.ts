// HTTP load from a child process of the bench: CONNECTIONS keep-alive connections (node:http agent), each
// sending GET URL one after the other for SECONDS. Prints one JSON line: requests, non-2xx, errors, rate.
//   node dist/bench/load.js URL CONNECTIONS SECONDS
import { Agent, request } from 'node:http';

const [url = '', connArg = '100', secondsArg = '5'] = process.argv.slice(2);
const connections = Number(connArg);
const deadline = performance.now() + Number(secondsArg) * 1000;
const agent = new Agent({ keepAlive: true, maxSockets: connections });
let requests = 0;
let non2xx = 0;
let errors = 0;
let lastError = '';

function once(): Promise<void> {
  return new Promise((resolve) => {
    const req = request(url, { agent }, (res) => {
      if ((res.statusCode ?? 0) < 200 || (res.statusCode ?? 0) > 299) non2xx++;
      res.resume();
      res.once('end', () => resolve());
      res.once('error', () => resolve());
    });
    req.once('error', (err) => {
      errors++;
      lastError = err.message;
      resolve();
    });
    req.end();
  });
}

async function connection(): Promise<void> {
  while (performance.now() < deadline) {
    await once();
    requests++;
  }
}

const t0 = performance.now();
await Promise.all(Array.from({ length: connections }, () => connection()));
const seconds = (performance.now() - t0) / 1000;
agent.destroy();
process.stdout.write(JSON.stringify({ requests, non2xx, errors, lastError, seconds, rate: requests / seconds }) + '\n');
