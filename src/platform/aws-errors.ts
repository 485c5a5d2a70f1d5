/**
 * What an AWS SDK error means for the caller: try again (throttled, a server fault, the
 * network) or stop and say why (denied, not found, rejected as sent). One list for every
 * AWS call Cordon makes (STS, Secrets Manager, SSM), because the SDK's own retries are off
 * everywhere: Cordon retries with its own backoff, and only what a retry can change.
 */

/** The fields of an SDK (or Node network) error that classification reads; never its message body. */
interface AwsLikeError {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

export type AwsErrorClass =
  /** The service asked us to slow down: back off and try again. */
  | 'throttled'
  /** The service failed on its side (5xx or a named internal fault): the next attempt may land elsewhere. */
  | 'server'
  /** The request never got an answer (reset, refused, DNS, timeout): nothing was decided. */
  | 'network'
  /** The caller's identity or token is not allowed: the same request gets the same answer. */
  | 'denied'
  /** The secret, parameter or version does not exist. */
  | 'not-found'
  /** The request itself is refused as sent (a parameter, policy or region): change it, not the timing. */
  | 'rejected'
  /** Anything else: not retried, reported by name. */
  | 'other';

/**
 * Names after dropping the `Exception` suffix: the SDK names a modeled error `<Code>Exception`
 * and an unmodeled one `<Code>`, and services of the same family disagree on which they model.
 */
const CLASS_OF_CODE = new Map<string, AwsErrorClass>([
  // Query-protocol services (STS) say Throttling; JSON ones (Secrets Manager, SSM) ThrottlingException;
  // EC2-style APIs RequestLimitExceeded; API Gateway-fronted ones TooManyRequests or Throttled.
  ['Throttling', 'throttled'],
  ['TooManyRequests', 'throttled'],
  ['RequestLimitExceeded', 'throttled'],
  ['Throttled', 'throttled'],
  // Server faults each service names its own way; most come with a 5xx, some (STS's
  // IDPCommunicationError: the identity provider did not answer STS) with a 400.
  ['InternalFailure', 'server'],
  ['InternalError', 'server'],
  ['InternalServiceError', 'server'],
  ['InternalServerError', 'server'],
  ['ServiceUnavailable', 'server'],
  ['RequestTimeout', 'server'],
  ['IDPCommunicationError', 'server'],
  // The SDK's own request or connection timeout (smithy's node-http-handler).
  ['TimeoutError', 'network'],
  // Credentials or token refused; a KMS key the role may not use to decrypt a secret.
  ['AccessDenied', 'denied'],
  ['UnrecognizedClient', 'denied'],
  ['InvalidSignature', 'denied'],
  ['InvalidClientTokenId', 'denied'],
  ['ExpiredToken', 'denied'],
  ['InvalidIdentityToken', 'denied'],
  ['IDPRejectedClaim', 'denied'],
  ['DecryptionFailure', 'denied'],
  ['KMSAccessDenied', 'denied'],
  ['ResourceNotFound', 'not-found'],
  ['ParameterNotFound', 'not-found'],
  ['ParameterVersionNotFound', 'not-found'],
  ['ValidationError', 'rejected'],
  ['InvalidParameterValue', 'rejected'],
  ['MalformedPolicyDocument', 'rejected'],
  ['PackedPolicyTooLarge', 'rejected'],
  ['RegionDisabled', 'rejected'],
]);

/** Node and undici error codes for a connection that failed or broke before an answer. */
const NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
]);

/** The error's name as the SDK gives it (`ResourceNotFoundException`), else its code. */
export function awsErrorName(e: unknown): string {
  const a = (e ?? {}) as AwsLikeError;
  return a.name || a.code || 'Error';
}

/** The service's error code: the name without the SDK's `Exception` suffix. */
export function awsErrorCode(e: unknown): string {
  return awsErrorName(e).replace(/(.)Exception$/, '$1');
}

export function awsHttpStatus(e: unknown): number | undefined {
  return ((e ?? {}) as AwsLikeError).$metadata?.httpStatusCode;
}

/** A named class wins over the status: AccessDenied with a 500 is still denied. */
export function classifyAwsError(e: unknown): AwsErrorClass {
  const named = CLASS_OF_CODE.get(awsErrorCode(e));
  if (named) return named;
  const status = awsHttpStatus(e);
  if (status === 429) return 'throttled';
  if (status !== undefined && status >= 500) return 'server';
  const a = (e ?? {}) as AwsLikeError;
  if (NETWORK_CODES.has(a.code ?? '') || NETWORK_CODES.has(a.name ?? '')) return 'network';
  // Node's HTTP client reports a reset mid-response as "socket hang up" without a code on some paths.
  if (status === undefined && /socket hang up|ECONNRESET|aborted/i.test(a.message ?? '')) return 'network';
  return 'other';
}

/** Whether another attempt can get another answer: throttling, server faults, the network. */
export function isRetryableAwsError(e: unknown): boolean {
  const c = classifyAwsError(e);
  return c === 'throttled' || c === 'server' || c === 'network';
}
