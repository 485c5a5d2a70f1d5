import { describe, expect, test } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { scanContainers, CONTAINER_LIMITS } from '../../../src/actions/run/archive.js';
import { tempDir } from '../../harness/tmp.js';

const VALUE = Buffer.from('archive-unit-value-77');

/** Every path whose content holds VALUE, and what was not scanned. */
function scan(data: Buffer, limits = CONTAINER_LIMITS): { hits: string[]; notScanned: string[] } {
  const hits: string[] = [];
  const notScanned = scanContainers(data, 'f', (p, d) => d.includes(VALUE) && hits.push(p), limits);
  return { hits, notScanned };
}

describe('archive reader', () => {
  test('opens nested gzip layers down to the depth bound, and names the layer past it', () => {
    let data = Buffer.concat([Buffer.from('x\n'), VALUE]);
    for (let i = 0; i < 3; i++) data = gzipSync(data);
    expect(scan(data)).toEqual({ hits: ['f!gunzip!gunzip!gunzip'], notScanned: [] });
    expect(scan(data, { ...CONTAINER_LIMITS, maxDepth: 2 })).toEqual({
      hits: [],
      notScanned: ['f!gunzip!gunzip (archives nested deeper than 2)'],
    });
  });

  test('the byte bound holds over all layers; damaged gzip is named, never passed', () => {
    const big = gzipSync(Buffer.alloc(4096));
    expect(scan(big, { ...CONTAINER_LIMITS, maxBytes: 1000 }).notScanned).toEqual([
      'f (over 1000 decompressed bytes)',
    ]);
    const damaged = Buffer.from(gzipSync(Buffer.concat([Buffer.alloc(100), VALUE])));
    damaged.fill(0xff, 10, 30);
    expect(scan(damaged).notScanned).toEqual(['f (damaged compressed data)']);
  });

  test('zip: deflated entries are read, an unknown method and the entry bound are named', () => {
    const dir = tempDir('cordon-archive-');
    writeFileSync(join(dir, 'a.txt'), Buffer.concat([Buffer.alloc(2000, 'a'), VALUE]));
    writeFileSync(join(dir, 'b.txt'), 'b'.repeat(2000));
    execFileSync('zip', ['-q', '-9', 'z.zip', 'a.txt', 'b.txt'], { cwd: dir });
    const zip = readFileSync(join(dir, 'z.zip'));
    expect(scan(zip)).toEqual({ hits: ['f!a.txt'], notScanned: [] });
    expect(scan(zip, { ...CONTAINER_LIMITS, maxEntries: 1 }).notScanned).toEqual([
      'f!b.txt (over 1 archive entries)',
    ]);
    // The central directory names method 8 for each entry: made 12 (bzip2), it is not read.
    const other = Buffer.from(zip);
    for (let i = other.length - 22; i >= 0; i--)
      if (other.readUInt32LE(i) === 0x02014b50) other.writeUInt16LE(12, i + 10);
    expect(scan(other)).toEqual({
      hits: [],
      notScanned: ['f!a.txt (compression method 12)', 'f!b.txt (compression method 12)'],
    });
  });

  test('tar: read as its bytes, a gzip entry opened under its long name; a damaged header is named', () => {
    const dir = tempDir('cordon-archive-');
    const long = `${'d'.repeat(120)}.gz`;
    writeFileSync(join(dir, long), gzipSync(VALUE));
    execFileSync('tar', ['--format=gnu', '-cf', 't.tar', long], { cwd: dir });
    const tar = readFileSync(join(dir, 't.tar'));
    expect(scan(tar)).toEqual({ hits: [`f!${long}!gunzip`], notScanned: [] });
    const damaged = Buffer.from(tar);
    damaged[1024 + 10] ^= 0xff;
    expect(scan(damaged).notScanned).toEqual(['f (damaged tar header at byte 1024)']);
  });

  test('tar: a header whose size is no number, with a valid checksum, is named, never passed', () => {
    const dir = tempDir('cordon-archive-');
    writeFileSync(join(dir, 'a'), 'a\n');
    writeFileSync(join(dir, 'v.gz'), gzipSync(VALUE));
    execFileSync('tar', ['--format=ustar', '-cf', 't.tar', 'a', 'v.gz'], { cwd: dir });
    const tar = Buffer.from(readFileSync(join(dir, 't.tar')));
    expect(scan(tar).hits).toEqual(['f!v.gz!gunzip']);
    // The first entry's size made "zzzzzzzzzzz", the checksum made to match again.
    tar.write('zzzzzzzzzzz\0', 124, 'latin1');
    tar.fill(0x20, 148, 156);
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += tar[i];
    tar.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
    expect(scan(tar)).toEqual({ hits: [], notScanned: ['f (damaged tar header at byte 0)'] });
  });

  test('bzip2, xz, zstd, 7z and rar are recognised and named as not read', () => {
    const dir = tempDir('cordon-archive-');
    writeFileSync(join(dir, 'v'), VALUE);
    execFileSync('sh', ['-c', 'bzip2 -k v && xz -k v'], { cwd: dir });
    expect(scan(readFileSync(join(dir, 'v.bz2'))).notScanned).toEqual(['f (bzip2 compressed: not read)']);
    expect(scan(readFileSync(join(dir, 'v.xz'))).notScanned).toEqual(['f (xz compressed: not read)']);
    expect(scan(Buffer.from('BZh is how this text starts')).notScanned).toEqual([]);
  });
});
