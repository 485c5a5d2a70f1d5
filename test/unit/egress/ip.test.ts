import { describe, expect, test } from '@jest/globals';
import { addressBytes, canonicalAddress, formatAddress } from '../../../src/fence/ip.js';

describe('one text form per address', () => {
  test('IPv6 collapses the longest run of zero groups, the first on a tie, never a single group', () => {
    expect(canonicalAddress('2001:db8:0:0:0:0:0:1')).toBe('2001:db8::1');
    expect(canonicalAddress('0:0:0:0:0:0:0:1')).toBe('::1');
    expect(canonicalAddress('0:0:0:0:0:0:0:0')).toBe('::');
    expect(canonicalAddress('2001:0:1:0:0:1:0:0')).toBe('2001:0:1::1:0:0');
    expect(canonicalAddress('2001:db8:0:1:1:1:1:1')).toBe('2001:db8:0:1:1:1:1:1');
    expect(canonicalAddress('1:2:3:4:5:6:7:8')).toBe('1:2:3:4:5:6:7:8');
  });

  test('leading zeros, upper case and an existing :: are normalised', () => {
    expect(canonicalAddress('2001:0DB8:0000::0001')).toBe('2001:db8::1');
    expect(canonicalAddress('2001:db8:2:0::30')).toBe('2001:db8:2::30');
    expect(canonicalAddress('fe80::')).toBe('fe80::');
  });

  test('a trailing dotted IPv4 is read as the last two groups', () => {
    expect(canonicalAddress('::ffff:192.0.2.1')).toBe('::ffff:c000:201');
    expect(Array.from(addressBytes('64:ff9b::203.0.113.5').slice(12))).toEqual([203, 0, 113, 5]);
  });

  test('IPv4 stays dotted decimal; bytes round-trip', () => {
    expect(canonicalAddress('192.0.2.10')).toBe('192.0.2.10');
    expect(formatAddress(Uint8Array.from([10, 0, 0, 1]))).toBe('10.0.0.1');
    expect(formatAddress(Buffer.from('20010db8000000000000000000000001', 'hex'))).toBe('2001:db8::1');
  });
});
