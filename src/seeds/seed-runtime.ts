// What running seeds needs and answering without seeds does not: xstate, the charts and their steps (and
// the host modules those use). The seed manager imports this module when StateDir holds a seed at start,
// or before the first seed is created (SeedManager.ready), never for an agent that has no seed.
export { createActor, fromPromise } from 'xstate';
export { chartFor, chartOf, KNOWN_MACHINES } from './seed-methods.js';
export { subState, topState } from '../../machines/seed-common.js';
export { TRANSFERRED } from './steps/transfer-steps.js';
export { CHECKS } from './steps/stream-steps.js';
export { REPLICATION } from './steps/replication-steps.js';
export { resumeAfterEnd } from './steps/farewell-steps.js';
