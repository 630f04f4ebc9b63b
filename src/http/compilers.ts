/**
 * fastify's own schema compilers, run on a route's first use instead of when the server is built.
 *
 * - **Serializers**: fastify compiles one for every status code every route declares (each error
 *   body too, and again for the HEAD twin of every GET), some with an ajv instance of their own
 *   for their unions: most of them a daemon never sends, and together they held ~1 MB of heap
 *   (docs/benchmarks.md, "Memory by module").
 * - **Validators** (body, querystring, params, headers): one ajv compile per route and part, most
 *   of a server's build time, for routes many daemons never see (the key pool's, the audit's).
 *
 * The compilers are fastify's (@fastify/fast-json-stringify-compiler and @fastify/ajv-compiler,
 * the same options and shared schemas), so what a request is held to and what a reply says are
 * unchanged. Their factories are made once per process: a compiler (with its ajv instance and
 * its cache) is shared by every server of the process built with the same options and shared
 * schemas (a test's daemons; the OpenAPI document's server compiles nothing at all).
 */
import AjvCompiler from '@fastify/ajv-compiler';
import SerializerSelector from '@fastify/fast-json-stringify-compiler';
import type { FastifySchemaCompiler, FastifyServerOptions } from 'fastify';

const eagerSerializers = SerializerSelector();
const eagerValidators = AjvCompiler();

export const lazySerializers: SerializerSelector.SerializerFactory = (externalSchemas, options) => {
  const compile = eagerSerializers(externalSchemas, options);
  return (route) => {
    let serialize: SerializerSelector.Serializer | undefined;
    return (doc) => (serialize ??= compile(route))(doc);
  };
};

type ValidatorFactory = NonNullable<NonNullable<NonNullable<FastifyServerOptions['schemaController']>['compilersFactory']>['buildValidator']>;
type Validator = ReturnType<FastifySchemaCompiler<unknown>>;
/** What ajv compiles: it takes the part's parent as a second argument when it has a schemaEnv. */
type AjvValidator = Validator & ((data: unknown, parent?: unknown) => ReturnType<Validator>) & { schemaEnv?: unknown };

/**
 * A validator that compiles on its first call, and is called as ajv's own would be:
 * - fastify passes ajv's validators the request as the parent of the part (`schemaEnv` says it is
 *   one), which lets ajv coerce the root value itself (a body `0` read as `null` where the schema
 *   allows null): the wrapper says so too and passes it on;
 * - fastify reads a failed validation's errors from the function it was given (`validate.errors`),
 *   so they are copied there after each call.
 */
export const lazyValidators = ((externalSchemas: Record<string, unknown>, options: unknown) => {
  const compile = (eagerValidators as unknown as (s: unknown, o: unknown) => FastifySchemaCompiler<unknown>)(externalSchemas, options);
  return (route: Parameters<FastifySchemaCompiler<unknown>>[0]) => {
    let validate: AjvValidator | undefined;
    const lazy = ((data: unknown, parent?: unknown) => {
      validate ??= compile(route) as AjvValidator;
      const result = validate.schemaEnv ? validate(data, parent) : validate(data);
      lazy.errors = validate.errors;
      return result;
    }) as AjvValidator;
    lazy.schemaEnv = true;
    return lazy;
  };
}) as unknown as ValidatorFactory;
