/**
 * Response serializers compiled on a route's first reply with that status, not when the server is
 * built. fastify compiles one for every status code every route declares (each error body too, and
 * again for the HEAD twin of every GET), some with an ajv instance of their own for their unions:
 * most of them a daemon never sends, and together they held ~1 MB of heap (docs/benchmarks.md,
 * "Memory by module"). The serializer itself is fastify's own (fast-json-stringify, the same
 * options and shared schemas), so what a reply says is unchanged.
 */
import SerializerSelector from '@fastify/fast-json-stringify-compiler';

const eager = SerializerSelector();

export const lazySerializers: SerializerSelector.SerializerFactory = (externalSchemas, options) => {
  const compile = eager(externalSchemas, options);
  return (route) => {
    let serialize: SerializerSelector.Serializer | undefined;
    return (doc) => (serialize ??= compile(route))(doc);
  };
};
