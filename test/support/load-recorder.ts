// `node --import dist/test/support/load-recorder.js ...` (e.g. through NODE_OPTIONS): appends the URL of
// every module the process loads, one per line, to the file named by LOAD_RECORD_FILE. Lets a test see
// which modules a real agent has loaded at a given moment.
import { register } from 'node:module';

register(new URL('./load-recorder-hooks.js', import.meta.url));
