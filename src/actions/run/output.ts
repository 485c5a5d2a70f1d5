/** The command's output on its way to the runner's log, scrubbed of secret values as a stream. */
import { Transform, type TransformCallback, type Readable, type Writable } from 'node:stream';
import type { StreamScrubber } from '../../platform/mask.js';

class ScrubTransform extends Transform {
  constructor(readonly scrubber: StreamScrubber) {
    super();
  }
  _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    const out = this.scrubber.push(chunk);
    if (out.length) this.push(out);
    done();
  }
  _flush(done: TransformCallback): void {
    const out = this.scrubber.flush();
    if (out.length) this.push(out);
    done();
  }
}

/** Pipes `from` to `to` (scrubbed or not) and resolves when `from` has ended and all was written. */
export function forward(from: Readable, to: Writable, scrubber?: StreamScrubber): Promise<void> {
  const src = scrubber ? from.pipe(new ScrubTransform(scrubber)) : from;
  src.pipe(to, { end: false });
  return new Promise((res) => {
    src.once('end', res);
    src.once('error', res);
    from.once('error', res);
  });
}
