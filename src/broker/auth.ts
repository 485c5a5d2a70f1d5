/**
 * Bearer check in constant time: both sides are hashed to 32-byte SHA-256 digests first,
 * so `timingSafeEqual` always compares equal lengths and the time taken says nothing about
 * how much of the token, or how long a token, was right.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

export class BearerCheck {
  private readonly expected: Buffer;

  constructor(token: string) {
    this.expected = digest(token);
  }

  /**
   * Whether an Authorization header carries the token: as the whole value (what the AWS
   * SDKs send from AWS_CONTAINER_AUTHORIZATION_TOKEN) or after `Bearer `.
   */
  accepts(header: string | undefined): boolean {
    if (!header) return false;
    const value = header.startsWith('Bearer ') ? header.slice(7) : header;
    return timingSafeEqual(digest(value), this.expected);
  }
}
