/** The HTTP error shape: fastify's `{statusCode, error, message}` plus a stable `code`. */
import { STATUS_CODES } from 'node:http';
import type { FastifyError } from 'fastify';
import { Errors, isBotwardenError, type BotwardenError } from '../errors.js';

export interface ErrorBody {
  statusCode: number;
  error: string;
  code: string;
  message: string;
  [k: string]: unknown;
}

const FASTIFY_CODES: Record<string, string> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'BODY_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'BAD_REQUEST',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'BAD_REQUEST',
  FST_ERR_CTP_INVALID_JSON_BODY: 'BAD_REQUEST',
};

export function toErrorBody(err: FastifyError | BotwardenError, params: Record<string, string> | undefined): ErrorBody {
  const make = (statusCode: number, code: string, message: string, extra: Record<string, unknown> = {}): ErrorBody => ({
    statusCode,
    error: STATUS_CODES[statusCode] ?? 'Error',
    code,
    message,
    ...extra,
  });
  if (isBotwardenError(err)) return make(err.statusCode, err.code, err.message, err.details);
  const fe = err as FastifyError;
  if (fe.validation) {
    if (fe.validationContext === 'params' && params?.account !== undefined) {
      const e = Errors.invalidAccountId(params.account);
      return make(400, e.code, e.message);
    }
    const where = fe.validationContext ?? 'request';
    const code = where === 'querystring' ? 'INVALID_QUERY' : where === 'body' ? 'INVALID_BODY' : 'BAD_REQUEST';
    return make(400, code, `Invalid ${where}: ${fe.message}`);
  }
  const status = typeof fe.statusCode === 'number' ? fe.statusCode : 500;
  if (status < 500) return make(status, FASTIFY_CODES[fe.code] ?? fe.code ?? 'BAD_REQUEST', fe.message);
  return make(500, 'INTERNAL_ERROR', 'Internal error; see the daemon log.');
}
