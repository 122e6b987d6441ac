// The reference for `npm run bench -- start`: a bare node:http server on 127.0.0.1:PORT that answers every
// request with a short text, spawned exactly as the agent is.
import { createServer } from 'node:http';

const port = Number(process.argv[2]);
createServer((_req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/plain' });
  res.end('ok');
}).listen(port, '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
