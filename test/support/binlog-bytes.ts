// Synthetic binary logs with the real byte layout: magic, then events with 19-byte v4 headers, the
// first a format description event. Enough for code that reads headers and byte ranges.
export interface SyntheticEvent {
  type: number;
  body: Buffer;
}

export const FORMAT_DESCRIPTION_EVENT = 15;
export const QUERY_EVENT = 2;

export function binlogBytes(events: SyntheticEvent[], serverId = 1): Buffer {
  const parts: Buffer[] = [Buffer.from([0xfe, 0x62, 0x69, 0x6e])];
  let offset = 4;
  for (const event of events) {
    const size = 19 + event.body.length;
    const header = Buffer.alloc(19);
    header.writeUInt32LE(1764064800, 0); // timestamp
    header.writeUInt8(event.type, 4);
    header.writeUInt32LE(serverId, 5);
    header.writeUInt32LE(size, 9); // event_size
    header.writeUInt32LE(offset + size, 13); // log_pos: end of this event
    header.writeUInt16LE(0, 17);
    parts.push(header, event.body);
    offset += size;
  }
  return Buffer.concat(parts);
}

/** A binlog whose format description event is fdeBodyBytes long, followed by query-like events. */
export function syntheticBinlog(fdeBodyBytes: number, queries: string[]): Buffer {
  return binlogBytes([
    { type: FORMAT_DESCRIPTION_EVENT, body: Buffer.alloc(fdeBodyBytes, 0x11) },
    ...queries.map((q) => ({ type: QUERY_EVENT, body: Buffer.from(q) })),
  ]);
}
