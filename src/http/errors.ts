/** The HTTP error shape: fastify's `{statusCode, error, message}` plus a stable `code` from errors.ts. */
import { STATUS_CODES } from 'node:http';
import type { FastifyError } from 'fastify';
import { BotwardenError, Errors, isBotwardenError, isDiskFull, type ErrorCode } from '../errors.js';

export interface ErrorBody {
  statusCode: number;
  error: string;
  code: ErrorCode;
  message: string;
  [k: string]: unknown;
}

const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'BODY_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'BAD_REQUEST',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'BAD_REQUEST',
  FST_ERR_CTP_INVALID_JSON_BODY: 'BAD_REQUEST',
};

/** Maps anything a route threw to a coded error; 5xx that are not ours become INTERNAL_ERROR. */
export function toBotwardenError(err: FastifyError | BotwardenError, params: Record<string, string> | undefined): BotwardenError {
  if (isBotwardenError(err)) return err;
  const fe = err;
  if (fe.validation) {
    if (fe.validationContext === 'params' && params?.account !== undefined) return Errors.invalidAccountId(params.account);
    const where = fe.validationContext ?? 'request';
    const first = fe.validation[0] as { keyword?: string; params?: { additionalProperty?: string }; instancePath?: string } | undefined;
    const unknown = first?.keyword === 'additionalProperties' ? first.params?.additionalProperty : undefined;
    const message =
      unknown !== undefined
        ? `Unknown ${where === 'querystring' ? 'query parameter' : where === 'body' ? 'body field' : 'field'} '${unknown}'${first?.instancePath ? ` in ${first.instancePath}` : ''}.`
        : `Invalid ${where}: ${fe.message}`;
    return where === 'querystring' ? Errors.invalidQuery(message) : where === 'body' ? Errors.invalidBody(message) : Errors.badRequest(message);
  }
  if (isDiskFull(err)) return Errors.storageFull(fe.message, err);
  const status = typeof fe.statusCode === 'number' ? fe.statusCode : 500;
  if (status < 500) {
    const code = FASTIFY_CODES[fe.code] ?? (status === 415 ? 'UNSUPPORTED_MEDIA_TYPE' : status === 413 ? 'BODY_TOO_LARGE' : 'BAD_REQUEST');
    return new BotwardenError(code, fe.message, {}, { cause: err });
  }
  return Errors.internal();
}

export function toErrorBody(err: BotwardenError): ErrorBody {
  return { statusCode: err.statusCode, error: STATUS_CODES[err.statusCode] ?? 'Error', code: err.code, message: err.message, ...err.details };
}
