// Process-wide counts of what the built-in transfer's receivers did, for /metrics.
export const transferStats = {
  /** Connections a receiver refused: wrong key, failed TLS handshake, malformed handshake. */
  refusedConnections: 0,
};
