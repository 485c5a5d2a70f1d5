import { describe, expect, test } from '@jest/globals';
import {
  awsErrorCode,
  awsErrorName,
  classifyAwsError,
  isRetryableAwsError,
} from '../../../src/platform/aws-errors.js';

/** An error shaped as the SDK throws it: a name, maybe a Node code, and the HTTP status. */
const err = (name: string, status?: number, code?: string, message = name) =>
  Object.assign(new Error(message), { name, code, $metadata: { httpStatusCode: status } });

describe('AWS error classes', () => {
  test('throttling under every name a service uses, and any 429', () => {
    for (const name of [
      'Throttling',
      'ThrottlingException',
      'TooManyRequestsException',
      'RequestLimitExceeded',
      'ThrottledException',
    ]) {
      expect(classifyAwsError(err(name, 400))).toBe('throttled');
    }
    expect(classifyAwsError(err('Whatever', 429))).toBe('throttled');
  });

  test('server faults: named ones whatever the status, and any 5xx', () => {
    expect(classifyAwsError(err('IDPCommunicationErrorException', 400))).toBe('server');
    expect(classifyAwsError(err('InternalFailure', 500))).toBe('server');
    expect(classifyAwsError(err('InternalServiceError', 500))).toBe('server');
    expect(classifyAwsError(err('InternalServerError', 500))).toBe('server');
    expect(classifyAwsError(err('Whatever', 503))).toBe('server');
  });

  test('the network: Node and undici codes, the SDK timeout, a hang-up without a code', () => {
    expect(classifyAwsError(err('Error', undefined, 'ECONNRESET'))).toBe('network');
    expect(classifyAwsError(err('Error', undefined, 'ECONNABORTED'))).toBe('network');
    expect(classifyAwsError(err('Error', undefined, 'UND_ERR_SOCKET'))).toBe('network');
    expect(classifyAwsError(err('TimeoutError'))).toBe('network');
    expect(classifyAwsError(err('Error', undefined, undefined, 'socket hang up'))).toBe('network');
    // With a status there was an answer: a message that mentions a reset is not a reset.
    expect(classifyAwsError(err('Error', 400, undefined, 'socket hang up'))).toBe('other');
  });

  test('denied, not found and rejected win over the status', () => {
    expect(classifyAwsError(err('AccessDenied', 500))).toBe('denied');
    expect(classifyAwsError(err('AccessDeniedException', 400))).toBe('denied');
    expect(classifyAwsError(err('InvalidIdentityTokenException', 400))).toBe('denied');
    expect(classifyAwsError(err('ExpiredTokenException', 400))).toBe('denied');
    expect(classifyAwsError(err('KMSAccessDeniedException', 400))).toBe('denied');
    expect(classifyAwsError(err('ResourceNotFoundException', 400))).toBe('not-found');
    expect(classifyAwsError(err('ParameterNotFound', 400))).toBe('not-found');
    expect(classifyAwsError(err('ValidationError', 400))).toBe('rejected');
    expect(classifyAwsError(err('MalformedPolicyDocumentException', 503))).toBe('rejected');
    expect(classifyAwsError(err('SomethingElse', 400))).toBe('other');
  });

  test('only throttling, server faults and the network are retried', () => {
    expect(isRetryableAwsError(err('Throttling', 400))).toBe(true);
    expect(isRetryableAwsError(err('Whatever', 503))).toBe(true);
    expect(isRetryableAwsError(err('Error', undefined, 'ECONNRESET'))).toBe(true);
    expect(isRetryableAwsError(err('AccessDenied', 500))).toBe(false);
    expect(isRetryableAwsError(err('ResourceNotFoundException', 400))).toBe(false);
    expect(isRetryableAwsError(err('ValidationError', 400))).toBe(false);
    expect(isRetryableAwsError(err('SomethingElse', 400))).toBe(false);
  });

  test('names: as the SDK gives them, and the service code without the Exception suffix', () => {
    expect(awsErrorName(err('ResourceNotFoundException'))).toBe('ResourceNotFoundException');
    expect(awsErrorCode(err('ResourceNotFoundException'))).toBe('ResourceNotFound');
    expect(awsErrorCode(err('Exception'))).toBe('Exception');
    expect(awsErrorName({ code: 'ECONNRESET' })).toBe('ECONNRESET');
    expect(awsErrorName(undefined)).toBe('Error');
  });
});
